"""Discrete bottlenecks: lookup-free quantization (LFQ) and Euclidean vector quantization (VQ).

Both take channel-first latents `z` [B, C, *grid] and return a `QuantizerOutput` whose `quantized`
has the same shape (straight-through gradients while `z` requires grad, the exact codes otherwise),
`indices` int64 [B, *grid], and the unweighted auxiliary losses; the model that owns the quantizer
weights and sums them. `indices_to_codes(indices)` gives back the codes a decoder takes, so tokens
written by one process decode in another.

Both run in float32 whatever the rest of the model runs in (`keep_fp32`, and autocast off inside):
a sign or an argmin picks the token id, and in bf16 (8 mantissa bits) near-ties that float32 tells
apart would round to the same value and flip codes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from einops import rearrange
from torch import nn


@dataclass
class QuantizerOutput:
    quantized: torch.Tensor  # [B, C, *grid], what the decoder takes
    indices: torch.Tensor  # int64 [B, *grid]
    losses: dict[str, torch.Tensor]  # unweighted; LFQ: commit, entropy; VQ: commit, codebook


def _straight_through(z: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    # Exact codes when no gradient is wanted, so `decode(encode(v).latents)` and
    # `decode_tokens(tokens)` see bit-identical inputs; z + (codes - z) is only equal up to rounding.
    return z + (codes - z).detach() if z.requires_grad else codes


def _float32(forward):
    """Run a quantizer's forward in float32, with autocast off (see the module docstring); the codes
    go back in the dtype `z` came in, which the decoder after it computes in (FSDP's bf16 policy)."""

    def run(self, z: torch.Tensor) -> QuantizerOutput:
        if torch.amp.is_autocast_available(z.device.type):  # not on the meta device
            with torch.autocast(z.device.type, enabled=False):
                out = forward(self, z.float())
        else:
            out = forward(self, z.float())
        return QuantizerOutput(out.quantized.to(z.dtype), out.indices, out.losses)

    return run


class LFQ(nn.Module):
    """Lookup-free quantization (MAGVIT-v2, Yu et al. 2023c; MotionAura App. B.2.1 default quantizer).

    Each of the `bits` channels is quantized to its sign, so the implicit codebook is {-1, +1}^bits
    with 2**bits entries and no parameters. The index of a code is the binary number whose bits are
    the positive channels, channel 0 being the most significant bit.

    An affine-free GroupNorm (one group: the whole latent of a sample) sits inside the quantizer, in
    front of the sign, so that the signs are balanced and the commitment target ±1 matches the
    latent's scale whatever the encoder's output scale is.

    Losses (MAGVIT-v2 §3.1, its entropy penalty): `commit` = ||z - sg[sign(z)]||^2, and `entropy` = E[H(q(z))] -
    codebook_entropy_weight * H(E[q(z)]), with q(z) the soft assignment
    softmax(-inv_temperature * ||z - c||^2) over codes c. The soft assignment is computed in
    factorised groups of at most `entropy_group_bits` channels so a 2**bits x bits code table never
    exists. Because -||z - c||^2 is a sum over channels, q(z) is a product over groups and the
    per-sample entropy is exact; the codebook entropy summed over groups is an upper bound of the
    joint one (subadditivity), equal to it when the groups' code usage is independent over the batch.
    """

    keep_fp32 = True

    def __init__(self, bits: int, *, entropy_group_bits: int = 8, inv_temperature: float = 100.0,
                 codebook_entropy_weight: float = 1.0):
        super().__init__()
        assert 1 <= bits <= 62, f"LFQ needs 1..62 bits for int64 indices, got {bits}; try 14 (16384 codes)"
        assert entropy_group_bits >= 1, "entropy_group_bits must be at least 1; try 8"
        self.bits = bits
        self.inv_temperature = inv_temperature
        self.codebook_entropy_weight = codebook_entropy_weight
        groups = math.ceil(bits / entropy_group_bits)
        self.group_sizes = [bits // groups + (1 if i < bits % groups else 0) for i in range(groups)]
        self.norm = nn.GroupNorm(1, bits, affine=False)
        for name, value in self._constants().items():
            self.register_buffer(name, value, persistent=False)

    def _constants(self) -> dict[str, torch.Tensor]:
        """The bit weights of an index and each entropy group's code corners: derived from `bits`,
        so not saved."""
        constants = {"powers": 2 ** torch.arange(self.bits - 1, -1, -1)}
        for size in set(self.group_sizes):
            constants[f"corners_{size}"] = self._corners(size)
        return constants

    @torch.no_grad()
    def reset_non_persistent_buffers(self) -> None:
        """Recompute the constants in place, after `to_empty` (a model built on the meta device and
        materialised for FSDP: vidtool.train.parallel.materialise)."""
        with torch.device("cpu"):
            constants = self._constants()
        for name, value in constants.items():
            getattr(self, name).copy_(value)

    @property
    def codebook_size(self) -> int:
        return 2**self.bits

    @staticmethod
    def _corners(size: int) -> torch.Tensor:
        """All 2**size codes in index order, [2**size, size] of ±1."""
        index = torch.arange(2**size)[:, None]
        return torch.where(index & (2 ** torch.arange(size - 1, -1, -1)) != 0, 1.0, -1.0)

    @_float32
    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        assert z.shape[1] == self.bits, f"LFQ expects {self.bits} channels, got {z.shape[1]}"
        z = self.norm(z)
        positive = z > 0
        codes = torch.where(positive, 1.0, -1.0).to(z.dtype)
        indices = (rearrange(positive, "b d ... -> b ... d").long() * self.powers).sum(-1)
        sample_entropy, codebook_entropy = self.entropy_terms(rearrange(z, "b d ... -> (b ...) d"))
        losses = {
            "commit": F.mse_loss(z, codes),
            "entropy": sample_entropy - self.codebook_entropy_weight * codebook_entropy,
        }
        return QuantizerOutput(_straight_through(z, codes), indices, losses)

    def entropy_terms(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean per-sample entropy, codebook entropy) in nats of the soft assignment of z [N, bits]."""
        sample_entropy = z.new_zeros((), dtype=torch.float32)
        codebook_entropy = z.new_zeros((), dtype=torch.float32)
        for part in z.float().split(self.group_sizes, dim=-1):
            corners = getattr(self, f"corners_{part.shape[-1]}")
            # -||z - c||^2 = 2 z.c - ||z||^2 - size; the last two are the same for every code c.
            # fp32 (forward turns autocast off): the logits reach ~1,600 at inv_temperature 100,
            # where bf16 resolves steps of 8 and the entropy's gradient would be mostly rounding.
            logits = 2 * self.inv_temperature * part @ corners.T.float()
            log_prob = logits.log_softmax(-1)
            prob = log_prob.exp()
            sample_entropy = sample_entropy - (prob * log_prob).sum(-1).mean()
            usage = prob.mean(0)
            # Clamped inside the log only: entr()'s gradient at a never-used code (usage 0) is inf.
            codebook_entropy = codebook_entropy - (usage * usage.clamp_min(1e-12).log()).sum()
        return sample_entropy, codebook_entropy

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """int64 [B, *grid] -> ±1 codes [B, bits, *grid], on the quantizer's device whatever the ids'
        (token files are read to the host; the model may be on an accelerator)."""
        bits = (indices.to(self.powers.device).unsqueeze(-1) & self.powers) != 0
        # Contiguous, like the codes `forward` makes: conv kernels round differently per layout.
        return rearrange(torch.where(bits, 1.0, -1.0), "b ... d -> b d ...").contiguous()


CODEBOOK_INITS = ("normal", "data", "kmeans")
KMEANS_ITERS = 10  # Lloyd iterations of the k-means initialisation (vector-quantize-pytorch's default)


class VectorQuantizer(nn.Module):
    """Euclidean nearest-neighbour VQ (van den Oord et al. 2017; MotionAura §3.1, Eq. 1).

    Losses: `codebook` = ||sg[z] - e||^2 moves the codes, `commit` = ||z - sg[e]||^2 the encoder
    (the model weights the latter by beta). Codes are plain parameters learned by gradient, no EMA.

    Codebook collapse — most codes never nearest to any encoder output, so they never get a gradient
    and never move — has two remedies here, both acting only in training mode while the codebook
    trains (`self.training` and `codebook.requires_grad`), before the batch is quantized:
    - `init`: "normal" keeps the N(0, 1) codes of construction; "data" puts them on random encoder
      outputs of the first training batch, "kmeans" on the k-means centroids of that batch
      (VQ-VAE-2 / Jukebox / SoundStream §3.2: codes start where the data is, at its scale);
    - `dead_code_steps` N > 0: a code that no vector of the last N training batches was quantized to
      is moved onto a random encoder output of the current batch (Jukebox §3.2 "random restarts",
      SoundStream §3.2), where it is the nearest code at once.
    Under torch.distributed the counts are all-reduced and the new codes are rank 0's, broadcast, so
    every rank keeps the same codebook. What they track (whether the codes were initialised, batches
    since each code was last used) are buffers, saved with the weights, so a resumed run continues
    them. They exist only when a remedy is on: the default quantizer's state is the codebook alone.
    """

    keep_fp32 = True

    def __init__(self, codebook_size: int, dim: int, *, init: str = "normal", dead_code_steps: int = 0):
        super().__init__()
        assert init in CODEBOOK_INITS, f"codebook init must be one of {CODEBOOK_INITS}, got {init!r}; try 'kmeans'"
        assert dead_code_steps >= 0, f"dead_code_steps counts training batches (0 = no restarts), got {dead_code_steps}"
        self.init, self.dead_code_steps = init, dead_code_steps
        self.codebook = nn.Parameter(torch.randn(codebook_size, dim))
        if init != "normal":
            self.register_buffer("initialised", torch.tensor(False))
        if dead_code_steps:
            self.register_buffer("steps_unused", torch.zeros(codebook_size, dtype=torch.long))

    @property
    def codebook_size(self) -> int:
        return self.codebook.shape[0]

    @_float32
    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        dim = self.codebook.shape[1]
        assert z.shape[1] == dim, f"VectorQuantizer expects {dim} channels, got {z.shape[1]}"
        channels_last = rearrange(z, "b d ... -> b ... d")
        flat = channels_last.reshape(-1, dim)
        upkeep = self.training and self.codebook.requires_grad
        if upkeep:
            self._initialise(flat.detach())
            self._restart_dead_codes(flat.detach())
        indices = self._nearest(flat).reshape(channels_last.shape[:-1])
        if upkeep and self.dead_code_steps:
            self._count_usage(indices)
        codes = self.indices_to_codes(indices).to(z.dtype)
        losses = {"codebook": F.mse_loss(codes, z.detach()), "commit": F.mse_loss(z, codes.detach())}
        return QuantizerOutput(_straight_through(z, codes), indices, losses)

    def _nearest(self, flat: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code of each row of `flat` [N, dim]."""
        codebook = self.codebook.float()  # a bf16 copy under FSDP's mixed-precision policy
        distance = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ codebook.T + codebook.pow(2).sum(1)
        return distance.argmin(1)

    @torch.no_grad()
    def _initialise(self, flat: torch.Tensor) -> None:
        if self.init == "normal" or self.initialised:
            return
        codes = _random_rows(flat, self.codebook_size)
        if self.init == "kmeans":
            codes = _kmeans(flat, codes, KMEANS_ITERS)
        self.codebook.copy_(_from_rank0(codes))
        self.initialised.fill_(True)

    @torch.no_grad()
    def _restart_dead_codes(self, flat: torch.Tensor) -> None:
        if not self.dead_code_steps:
            return
        dead = (self.steps_unused >= self.dead_code_steps).nonzero().squeeze(1)
        if dead.numel():  # the counters are the same on every rank, so every rank takes this branch
            self.codebook[dead] = _from_rank0(_random_rows(flat, dead.numel()))
            self.steps_unused[dead] = 0

    @torch.no_grad()
    def _count_usage(self, indices: torch.Tensor) -> None:
        counts = torch.bincount(indices.flatten(), minlength=self.codebook_size)
        if _world_size() > 1:
            dist.all_reduce(counts)
        self.steps_unused.add_(1).masked_fill_(counts > 0, 0)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """int64 [B, *grid] -> codebook vectors [B, dim, *grid], on the codebook's device."""
        return rearrange(self.codebook[indices.to(self.codebook.device)], "b ... d -> b d ...").contiguous()


def _random_rows(flat: torch.Tensor, count: int) -> torch.Tensor:
    """`count` rows of `flat` drawn at random from torch's generator (which the trainer seeds per
    batch): distinct rows when there are enough, else with repeats."""
    if flat.shape[0] >= count:
        chosen = torch.randperm(flat.shape[0], device=flat.device)[:count]
    else:
        chosen = torch.randint(flat.shape[0], (count,), device=flat.device)
    return flat[chosen].clone()


def _kmeans(points: torch.Tensor, centroids: torch.Tensor, iterations: int) -> torch.Tensor:
    """Lloyd's algorithm from `centroids` [K, dim] on `points` [N, dim]; a centroid that no point is
    nearest to stays where it is."""
    for _ in range(iterations):
        nearest = torch.cdist(points, centroids).argmin(1)
        sums = torch.zeros_like(centroids).index_add_(0, nearest, points)
        counts = torch.bincount(nearest, minlength=centroids.shape[0]).unsqueeze(1)
        centroids = torch.where(counts > 0, sums / counts.clamp_min(1), centroids)
    return centroids


def _world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _from_rank0(tensor: torch.Tensor) -> torch.Tensor:
    """Rank 0's `tensor` on every rank (each rank drew its own from its own data), in place."""
    if _world_size() > 1:
        dist.broadcast(tensor, src=0)
    return tensor
