"""Masked discrete diffusion over token ids (MotionAura §3.2): the forward process replaces tokens
by a <MASK> id, the network predicts the clean ids, and sampling unmasks the most confident
predictions step by step (MaskGIT-style, all masked tokens predicted at once each step).

Time t ∈ [0, 1]: t = 0 is the clean video, t = 1 is z_T, every token masked. The schedule gives the
fraction of tokens masked at t. Samplers know nothing about networks: `sample` takes a function
from (tokens, t) to logits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

SCHEDULES = ("cosine", "linear")


@dataclass
class MaskSchedule:
    kind: str = "cosine"

    def __post_init__(self):
        if self.kind not in SCHEDULES:
            raise ValueError(f"mask schedule must be one of {SCHEDULES}, got {self.kind!r}")

    def ratio(self, t: torch.Tensor) -> torch.Tensor:
        """Fraction of tokens masked at time t: 0 at t = 0, 1 at t = 1, increasing.

        cosine: sin(π t / 2), MaskGIT's γ(r) = cos(π r / 2) read with r = 1 − t, which spends
        more of training on heavily masked inputs, where generation starts."""
        t = t.clamp(0.0, 1.0)
        return torch.sin(t * math.pi / 2) if self.kind == "cosine" else t

    def time_of(self, ratio: torch.Tensor) -> torch.Tensor:
        """The inverse of `ratio`: the t at which this fraction of tokens is masked."""
        ratio = ratio.clamp(0.0, 1.0)
        return 2 / math.pi * torch.asin(ratio) if self.kind == "cosine" else ratio


def corrupt(tokens: torch.Tensor, t: torch.Tensor, schedule: MaskSchedule, mask_id: int,
            maskable: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward process q(z_t | z_0): mask round(ratio(t) · n) of each item's maskable tokens, at least one.

    tokens [B, S] int, t [B]; `maskable` [B, S] bool limits masking (inpainting: the region to fill).
    Returns (z_t with mask_id at masked places, masked [B, S] bool)."""
    b, s = tokens.shape
    maskable = torch.ones_like(tokens, dtype=torch.bool) if maskable is None else maskable
    count = maskable.sum(1)
    k = (schedule.ratio(t) * count).round().long().clamp(min=1)
    k = torch.minimum(k, count)
    # A random rank among the maskable places; the k lowest ranks get masked.
    scores = torch.rand(b, s, device=tokens.device).masked_fill(~maskable, 2.0)
    ranks = scores.argsort(1).argsort(1)
    masked = (ranks < k[:, None]) & maskable
    return tokens.masked_fill(masked, mask_id), masked


def masked_cross_entropy(logits: torch.Tensor, target: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """L_diff = −log p(z_0 | z_t, t, text), averaged over the masked places only.

    logits [B, S, K], target [B, S], masked [B, S] bool."""
    losses = F.cross_entropy(logits.transpose(1, 2).float(), target.long(), reduction="none")
    return (losses * masked).sum() / masked.sum().clamp(min=1)


def sample(logits_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], tokens: torch.Tensor, mask_id: int,
           *, steps: int, schedule: MaskSchedule, temperature: float = 1.0, choice_temperature: float = 0.0,
           generators: list[torch.Generator] | None = None,
           progress: Callable[[int], None] | None = None) -> torch.Tensor:
    """Fill every `mask_id` place of tokens [B, S]; places holding a real id are never changed.

    Each step predicts all masked tokens at once (a draw from softmax(logits / temperature), or the
    argmax at temperature 0), keeps the most confident draws and re-masks the rest so that the
    masked fraction follows the schedule down to zero at the last step. `choice_temperature` > 0
    ranks by log-confidence plus Gumbel noise scaled by choice_temperature · (1 − step/steps)
    (MaskGIT's annealed choice: chance spreads the early reveals over the clip, confidence decides
    the late ones). `generators` (one per item)
    make the draws reproducible item by item."""
    tokens = tokens.clone()
    b = tokens.shape[0]
    generators = generators or [None] * b
    initially_masked = (tokens == mask_id).sum(1)
    for step in range(1, steps + 1):
        masked = tokens == mask_id
        if not masked.any():
            break
        # The network is told the t of the masked fraction of the whole sequence, as in training.
        t_now = schedule.time_of(masked.sum(1).float() / tokens.shape[1])
        logits = logits_fn(tokens, t_now).float()
        if temperature > 0:
            draws = draw(F.softmax(logits / temperature, dim=-1), generators)
        else:
            draws = logits.argmax(-1)
        # Confidence is the model's own probability of the draw, whatever the temperature.
        confidence = F.log_softmax(logits, dim=-1).gather(-1, draws[..., None]).squeeze(-1)
        if choice_temperature > 0:
            uniform = uniforms(generators, tokens.shape[1], tokens.device)
            gumbel = -torch.log((-torch.log(uniform.clamp(1e-20, 1.0))).clamp_min(1e-20))
            confidence = confidence + choice_temperature * (1.0 - step / steps) * gumbel
        confidence = confidence.masked_fill(~masked, -math.inf)
        # Masked places left after this step: the schedule's fraction of those masked at the start.
        remaining = (schedule.ratio(torch.tensor(1.0 - step / steps)) * initially_masked).floor().long()
        order = confidence.argsort(1, descending=True)  # most confident first
        rank = order.argsort(1)
        unmask = masked & (rank < (masked.sum(1) - remaining).clamp(min=1)[:, None])
        tokens = torch.where(unmask, draws, tokens)
        if progress:
            progress(step)
    return tokens


def draw(probs: torch.Tensor, generators: list[torch.Generator | None]) -> torch.Tensor:
    """One id per place from probabilities [B, S, K], item i's draws from generators[i].

    On the CPU this is torch.multinomial, row by row. Elsewhere multinomial would need the [B, S, K]
    probabilities on the generators' device (the host, for the CPU generators the stages pass) at
    every step; instead one uniform per place is drawn there, the [B, S] uniforms go to the device,
    and the CDF is inverted where the probabilities are (`invert_cdf`): still reproducible item by
    item, though not the same draws as multinomial's."""
    if probs.device.type == "cpu":
        return torch.stack([torch.multinomial(p, 1, generator=g).squeeze(-1) for p, g in zip(probs, generators)])
    return invert_cdf(probs, uniforms(generators, probs.shape[1], probs.device))


def invert_cdf(probs: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """The id k of probs [..., K] whose CDF interval [F(k−1), F(k)) holds `uniform` [...] ∈ [0, 1)
    (scaled by the total, so unnormalised rows work): id k comes with probability p_k, and an id of
    probability zero never (its interval is empty)."""
    cdf = probs.cumsum(-1)
    position = (uniform * cdf[..., -1]).unsqueeze(-1)
    return torch.searchsorted(cdf, position, right=True).squeeze(-1).clamp_max(probs.shape[-1] - 1)


def uniforms(generators: list[torch.Generator | None], length: int, device: torch.device) -> torch.Tensor:
    """[B, length] uniforms in [0, 1), row i from generators[i] on that generator's own device (the
    global CPU generator for None), then moved to `device`."""
    return torch.stack([torch.rand(length, generator=g, device=g.device if g is not None else "cpu")
                        for g in generators]).to(device)

