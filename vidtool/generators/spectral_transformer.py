"""MotionAura's spectral transformer (§3.3, Fig. 4): the denoiser of masked discrete diffusion over
3D-MBQ-VAE tokens, conditioned on the diffusion time t, the frame rate and text.

One block, as Eq. 2–5 write it (ℜ = real part, fft2D over the sequence and embedding axes):

    B_t     = AdLN(z_t, t, FPS)
    Z_attn  = MSA(Q(ℜ fft2D(B_t)), K(ℜ fft2D(B_t)), V(ℜ fft2D(B_t)))          (2), RoPE on Q and K
    z_out   = AdLN(ℜ ifft2D(Z_attn) + B_t)                                    (3)
    Z_cross = MSA(Q(ℜ fft2D(z_out)), K(ℜ fft2D(T(X))), V(ℜ fft2D(T(X))))      (4)
    z_cross = AdLN(ℜ ifft2D(Z_cross) + AdLN(z_out))                           (5)
    z       = z_cross + FF(AdLN(z_cross))

then a final AdLN, a linear map to the codebook and a softmax (the loss's cross-entropy). `fft=False`
is the paper's "w/o fft" ablation (the transforms become identities); `position_encoding=
"sinusoidal"` is App. D.6's ablation (an additive 3-D table instead of RoPE).

The sequence is the flattened (t, h, w) token grid plus, for inpainting, further token segments
(`SpectralInpaintModel` builds those). The FFT runs over each segment on its own: over the whole
concatenation, the video tokens' frequencies would change meaning when context is appended, and
the frozen generator scores the masked tokens about twice as badly (cross-entropy 9.7 vs 5.0 on
the region of held-in shapes clips) before any adapter training.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from vidtool.diffusion.masked import MaskSchedule, corrupt, masked_cross_entropy
from vidtool.nn.rope import apply_rope, grid_positions, rope_angles, sinusoidal_positions
from vidtool.nn.params import parameter_count

POSITION_ENCODINGS = ("rope", "sinusoidal")


@dataclass
class SpectralTransformerConfig:
    dim: int = 128
    heads: int = 4
    blocks: int = 4
    mlp_ratio: float = 4.0
    time_embedding_dim: int = 128  # Table 10: 512 at paper scale
    codebook_size: int = 1024  # the tokenizer's; the <MASK> id is codebook_size
    text_dim: int = 384  # the text encoder's token width (T5-XXL: 4096, MiniLM: 384)
    fft: bool = True
    position_encoding: str = "rope"
    mask_schedule: str = "cosine"
    text_dropout: float = 0.1  # prompts replaced by the empty prompt, for classifier-free guidance
    # The token grid it was trained on and the video it stands for.
    token_frames: int = 4
    token_height: int = 16
    token_width: int = 16
    temporal_factor: int = 4  # video frames per token frame (the tokenizer's)
    fps: float = 8.0
    # Sampling defaults (Table 12: 10 steps). Table 10's CFG scale 10 floods the tiny model's frames
    # with the prompt's colour; 3 draws the object (README, MotionAura measurements).
    sample_steps: int = 10
    cfg: float = 3.0
    temperature: float = 1.0
    choice_temperature: float = 4.5  # MaskGIT's annealed Gumbel noise on the unmasking order
    # Provenance: the tokenizer whose ids these are and the text encoder of the captions.
    tokenizer: str = ""
    text_encoder: str = "all-MiniLM-L6-v2"
    text_max_length: int = 32

    def __post_init__(self):
        assert self.dim % self.heads == 0, f"dim {self.dim} must be divisible by heads {self.heads}"
        assert self.position_encoding in POSITION_ENCODINGS, (
            f"position_encoding must be one of {POSITION_ENCODINGS}, got {self.position_encoding!r}")
        MaskSchedule(self.mask_schedule)  # validates the name


# Table 2: S/M/L embedding size, attention heads, blocks; Table 10: T5-XXL text (4096-d, 256
# tokens), 512-d time embedding. The codebook is the MAGVIT-v2-style LFQ's 2^16.
PAPER = dict(time_embedding_dim=512, codebook_size=2**16, text_dim=4096, text_max_length=256,
             token_frames=4, token_height=16, token_width=16, text_encoder="t5-xxl")
PRESETS: dict[str, dict] = {
    "tiny": dict(dim=128, heads=4, blocks=4, time_embedding_dim=128),
    "s": dict(dim=1024, heads=16, blocks=17, **PAPER),
    "m": dict(dim=2048, heads=16, blocks=28, **PAPER),
    "l": dict(dim=4096, heads=32, blocks=37, **PAPER),
}
PAPER_PARAMETERS = {"s": 0.89e9, "m": 1.94e9, "l": 3.12e9}  # Table 2 / §5.2


def preset(name: str, **overrides) -> SpectralTransformerConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown spectral preset {name!r}; known: {', '.join(PRESETS)}")
    return SpectralTransformerConfig(**{**PRESETS[name], **overrides})


def spectral(x: torch.Tensor, on: bool, lengths: list[int] | None = None) -> torch.Tensor:
    """ℜ(fft2D(x)) over the sequence and embedding axes (float32: cuFFT has no bf16), segment by
    segment when `lengths` splits the sequence: a frequency means the same thing to the network
    whatever context segments (inpainting's z_m and sketch tokens) follow the video tokens."""
    if not on:
        return x
    parts = x.float().split(lengths or [x.shape[-2]], dim=-2)
    return torch.cat([torch.fft.fft2(p, dim=(-2, -1), norm="ortho").real for p in parts], dim=-2).to(x.dtype)


def inverse_spectral(x: torch.Tensor, on: bool, lengths: list[int] | None = None) -> torch.Tensor:
    if not on:
        return x
    parts = x.float().split(lengths or [x.shape[-2]], dim=-2)
    return torch.cat([torch.fft.ifft2(p, dim=(-2, -1), norm="ortho").real for p in parts], dim=-2).to(x.dtype)


class AdaLN(nn.Module):
    """LayerNorm whose scale and shift come from the (t, FPS) embedding; starts as a plain LayerNorm."""

    def __init__(self, dim: int, cond_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False)
        self.modulation = nn.Linear(cond_dim, 2 * dim)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        scale, shift = rearrange(self.modulation(cond), "b (two d) -> two b 1 d", two=2)
        return self.norm(x) * (1 + scale) + shift


class Attention(nn.Module):
    """Multi-head attention with separate Q, K, V projections (the LoRA targets are `to_q`, `to_k`)."""

    def __init__(self, dim: int, heads: int, context_dim: int | None = None):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim)
        self.to_k = nn.Linear(context_dim or dim, dim)
        self.to_v = nn.Linear(context_dim or dim, dim)
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, angles: torch.Tensor | None = None,
                key_mask: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context
        q, k, v = (rearrange(proj, "b s (m d) -> b m s d", m=self.heads)
                   for proj in (self.to_q(x), self.to_k(context), self.to_v(context)))
        if angles is not None:
            q, k = apply_rope(q, angles), apply_rope(k, angles)
        mask = None if key_mask is None else rearrange(key_mask, "b l -> b 1 1 l")
        return self.to_out(rearrange(F.scaled_dot_product_attention(q, k, v, attn_mask=mask), "b m s d -> b s (m d)"))


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.proj_in = nn.Linear(dim, hidden)
        self.proj_out = nn.Linear(hidden, dim)  # "the output feed-forward layer": FF-LoRA's target

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj_out(F.gelu(self.proj_in(x)))


class SpectralBlock(nn.Module):
    def __init__(self, config: SpectralTransformerConfig):
        super().__init__()
        dim, cond = config.dim, config.time_embedding_dim
        self.fft = config.fft
        self.norm_in, self.norm_attn, self.norm_ctx, self.norm_cross, self.norm_ff = (AdaLN(dim, cond) for _ in range(5))
        self.self_attn = Attention(dim, config.heads)
        self.cross_attn = Attention(dim, config.heads, context_dim=config.text_dim)
        self.ff = FeedForward(dim, int(dim * config.mlp_ratio))

    def forward(self, z: torch.Tensor, cond: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor,
                angles: torch.Tensor | None, lengths: list[int] | None = None) -> torch.Tensor:
        """`lengths`: the sizes of the sequence's segments, each transformed on its own."""
        b_t = self.norm_in(z, cond)
        attn = self.self_attn(spectral(b_t, self.fft, lengths), angles=angles)  # Eq. 2
        z_out = self.norm_attn(inverse_spectral(attn, self.fft, lengths) + b_t, cond)  # Eq. 3
        # Eq. 4. In the frequency domain a text position no longer is a token, so padding cannot be
        # masked there; padded tokens are zero vectors and the encoder pads to a fixed length.
        cross = self.cross_attn(spectral(z_out, self.fft, lengths), context=spectral(text, self.fft),
                                key_mask=None if self.fft else text_mask)
        z_cross = self.norm_cross(inverse_spectral(cross, self.fft, lengths) + self.norm_ctx(z_out, cond), cond)  # Eq. 5
        return z_cross + self.ff(self.norm_ff(z_cross, cond))


@dataclass
class Segment:
    """A run of the input sequence: embeddings [B, S, dim] and their (t, h, w) positions [S, 3]."""

    embeddings: torch.Tensor
    positions: torch.Tensor = field(repr=False)


class SpectralTransformer(nn.Module):
    family = "spectral"
    config_class = SpectralTransformerConfig

    def __init__(self, config: SpectralTransformerConfig):
        super().__init__()
        self.config = config
        self.schedule = MaskSchedule(config.mask_schedule)
        self.token_embedding = nn.Embedding(config.codebook_size + 1, config.dim)  # + <MASK>
        tdim = config.time_embedding_dim
        self.time_mlp = nn.Sequential(nn.Linear(tdim, tdim), nn.SiLU(), nn.Linear(tdim, tdim))
        self.fps_mlp = nn.Sequential(nn.Linear(tdim, tdim), nn.SiLU(), nn.Linear(tdim, tdim))
        self.blocks = nn.ModuleList(SpectralBlock(config) for _ in range(config.blocks))
        self.norm_out = AdaLN(config.dim, tdim)
        self.to_logits = nn.Linear(config.dim, config.codebook_size)

    @property
    def mask_id(self) -> int:
        return self.config.codebook_size

    def parameter_counts(self) -> dict[str, int]:
        return {"blocks": parameter_count(self.blocks), "total": parameter_count(self)}

    def condition(self, t: torch.Tensor, fps: torch.Tensor) -> torch.Tensor:
        """The AdLN input: embeddings of t ∈ [0, 1] (scaled to the usual 0..1000 range) and of the FPS."""
        from diffusers.models.embeddings import get_timestep_embedding

        dim = self.config.time_embedding_dim
        dtype = self.time_mlp[0].weight.dtype
        return (self.time_mlp(get_timestep_embedding(t.float() * 1000, dim).to(dtype))
                + self.fps_mlp(get_timestep_embedding(fps.float() * 10, dim).to(dtype)))

    def token_segment(self, tokens: torch.Tensor) -> Segment:
        """tokens [B, T, h, w] (ids, <MASK> allowed) → the embedded, flattened grid."""
        _, t, h, w = tokens.shape
        flat = rearrange(tokens, "b t h w -> b (t h w)")
        return Segment(self.token_embedding(flat.long()), grid_positions(t, h, w, device=tokens.device))

    def run(self, segments: list[Segment], t: torch.Tensor, fps: torch.Tensor, text: torch.Tensor,
            text_mask: torch.Tensor) -> torch.Tensor:
        """Blocks over the concatenated segments → hidden states [B, S_total, dim] before the head."""
        x = torch.cat([s.embeddings for s in segments], dim=1)
        positions = torch.cat([s.positions for s in segments])
        angles = None
        if self.config.position_encoding == "rope":
            angles = rope_angles(positions, self.config.dim // self.config.heads)
        else:
            x = x + sinusoidal_positions(positions, self.config.dim).to(x.dtype)
        cond = self.condition(t, fps)
        text = text.to(x.dtype)
        lengths = [s.embeddings.shape[1] for s in segments]
        for block in self.blocks:
            x = block(x, cond, text, text_mask, angles, lengths)
        return self.norm_out(x, cond)

    def forward(self, tokens: torch.Tensor, t: torch.Tensor, fps: torch.Tensor, text: torch.Tensor,
                text_mask: torch.Tensor) -> torch.Tensor:
        """tokens [B, T, h, w] → logits over the codebook [B, T·h·w, codebook_size]."""
        return self.to_logits(self.run([self.token_segment(tokens)], t, fps, text, text_mask))

    def training_losses(self, batch: dict, *, step: int, total_steps: int) -> dict[str, torch.Tensor]:
        """L_diff (§3.2): cross-entropy of the clean ids at the masked places of z_t, t ~ U(0, 1)."""
        from vidtool.generators.t2i import drop_prompts

        tokens = batch["tokens"].long()
        b, t, h, w = tokens.shape
        text, text_mask = drop_prompts(batch, self.config.text_dropout)
        clean = rearrange(tokens, "b t h w -> b (t h w)")
        times = torch.rand(b, device=tokens.device)
        z_t, masked = corrupt(clean, times, self.schedule, self.mask_id)
        logits = self(rearrange(z_t, "b (t h w) -> b t h w", t=t, h=h), times, batch["fps"], text, text_mask)
        loss = masked_cross_entropy(logits, clean, masked)
        accuracy = ((logits.argmax(-1) == clean) & masked).sum() / masked.sum()
        return {"loss": loss, "masked_accuracy": accuracy.detach()}

def build(preset_name: str, overrides: dict, base, data) -> SpectralTransformer:
    """The trainer's entry (vidtool.generators.build): codebook, grid and text width come from the token set."""
    config = preset(preset_name, **overrides)
    config.codebook_size = data.codebook_size
    config.token_frames, config.token_height, config.token_width = data.grid
    config.temporal_factor = data.temporal_factor
    config.fps = data.fps
    config.text_dim = data.text_dim
    # The token set's caption length is what generate encodes prompts at (a paper preset's 256 gives
    # way to it); a --set asking for another is refused rather than trained on a different length.
    have, asked = getattr(data, "text_length", None), overrides.get("text_max_length")
    if have is not None and asked is not None and asked != have:
        raise ValueError(f"text_max_length is {asked} but the token set's captions have {have} tokens; build the set "
                         f"from a text cache of that length (vidtool embed-text --max-length {asked})")
    config.text_max_length = have or config.text_max_length
    config.tokenizer = data.tokenizer
    config.text_encoder = data.text_encoder
    return SpectralTransformer(config)
