"""HARIVO's trainable parts (paper §3 and Appendix A): temporal layers that sit after the frozen
spatial transformers, the mapping network in front of the U-Net, the frame-wise token generator and
the projection head of the h-space contrastive loss.

Every part that writes into the frozen T2I path ends in a zero-initialised projection and a
residual, so an untrained video model is the T2I model applied per frame.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn


def zero_init(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def frame_positions(frames: int, dim: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Sinusoidal encoding of the frame index, [frames, dim]: without it temporal attention is
    permutation-equivariant over frames and cannot tell forward motion from backward."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=device, dtype=torch.float32) / max(half, 1))
    angles = torch.arange(frames, device=device, dtype=torch.float32)[:, None] * freqs[None]
    enc = torch.cat([angles.sin(), angles.cos()], dim=-1)
    return F.pad(enc, (0, dim - enc.shape[-1])).to(dtype)  # odd dim: one zero column


class TemporalSelfAttention(nn.Module):
    """Pre-norm multi-head self-attention across frames on [N, F, C] tokens (N = batch x pixels),
    residual, with a zero-initialised output projection."""

    def __init__(self, dim: int, heads: int, head_dim: int):
        super().__init__()
        self.heads = heads
        self.norm = nn.LayerNorm(dim)
        self.to_qkv = nn.Linear(dim, 3 * heads * head_dim, bias=False)
        self.proj_out = zero_init(nn.Linear(heads * head_dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x) + frame_positions(x.shape[1], x.shape[2], x.device, x.dtype)
        q, k, v = rearrange(self.to_qkv(h), "n f (three h d) -> three n h f d", three=3, h=self.heads)
        out = rearrange(F.scaled_dot_product_attention(q, k, v), "n h f d -> n f (h d)")
        return x + self.proj_out(out)


class TemporalLayer(nn.Module):
    """The temporal layer l_theta inserted after a frozen spatial transformer (§3.1, App. A): the
    frames of each clip attend to each other at every pixel, then a feed-forward; both residual and
    zero-initialised. Input and output [(b f), c, h, w], as the spatial layers see them."""

    def __init__(self, channels: int, head_dim: int, ff_mult: int = 2):
        super().__init__()
        self.attention = TemporalSelfAttention(channels, max(channels // head_dim, 1), head_dim)
        self.ff = nn.Sequential(nn.LayerNorm(channels), nn.Linear(channels, ff_mult * channels), nn.GELU(),
                                zero_init(nn.Linear(ff_mult * channels, channels)))

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        h, w = x.shape[-2:]
        tokens = rearrange(x, "(b f) c h w -> (b h w) f c", f=frames)
        tokens = self.attention(tokens)
        tokens = tokens + self.ff(tokens)
        return rearrange(tokens, "(b h w) f c -> (b f) c h w", h=h, w=w)


class MappingNetwork(nn.Module):
    """l_theta^M (§3.2, App. A): maps the U-Net's input x_t [B, C, F, h, w] to a distribution
    better suited to video: a residual 3D convolution over (f, h, w), then temporal attention with a
    zero-initialised linear output, residual. Identity at initialisation."""

    def __init__(self, channels: int, hidden: int, heads: int, head_dim: int):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv3d(channels, hidden, 3, padding=1), nn.SiLU(),
                                  zero_init(nn.Conv3d(hidden, channels, 3, padding=1)))
        self.attention = TemporalSelfAttention(channels, heads, head_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.conv(x)
        h, w = x.shape[-2:]
        tokens = self.attention(rearrange(x, "b c f h w -> (b h w) f c"))
        return rearrange(tokens, "(b h w) f c -> b c f h w", h=h, w=w)


class FrameTokenGenerator(nn.Module):
    """t_theta: (M x D) -> (F x K x D) (§3.5, App. A). Linear+SiLU on each text token, a 1D
    convolution (kernel 1) across the M token positions that makes F*K new tokens, then
    Linear+SiLU layers. The last layer is a plain Linear, so the tokens can span the text
    encoder's range (a final SiLU would bound them below at -0.28)."""

    def __init__(self, text_dim: int, text_length: int, frames: int, tokens_per_frame: int):
        super().__init__()
        self.frames, self.tokens = frames, tokens_per_frame
        self.embed = nn.Sequential(nn.Linear(text_dim, text_dim), nn.SiLU())
        self.expand = nn.Conv1d(text_length, frames * tokens_per_frame, kernel_size=1, bias=False)
        self.head = nn.Sequential(nn.SiLU(), nn.Linear(text_dim, text_dim), nn.SiLU(),
                                  nn.Linear(text_dim, text_dim), nn.SiLU(), nn.Linear(text_dim, text_dim))

    def forward(self, text: torch.Tensor, frames: int) -> torch.Tensor:
        """Text tokens [B, M, D] -> frame-wise tokens [B, frames, K, D] (the first `frames` frames)."""
        assert text.shape[1] == self.expand.in_channels, (
            f"text has {text.shape[1]} tokens, the token generator was built for {self.expand.in_channels}; "
            "encode prompts with the base model's text_max_length")
        tokens = self.head(self.expand(self.embed(text)))
        return rearrange(tokens, "b (f k) d -> b f k d", f=self.frames)[:, :frames]


def with_frame_tokens(text: torch.Tensor, mask: torch.Tensor, tokens: torch.Tensor | None,
                      frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-frame conditioning [(B F), M (+K), D] and its mask: the text tokens repeated for every
    frame, with that frame's K tokens appended (all K attendable) when `tokens` [B, F, K, D] is given."""
    text = repeat(text, "b m d -> b f m d", f=frames)
    mask = repeat(mask, "b m -> b f m", f=frames)
    if tokens is not None:
        text = torch.cat([text, tokens.to(text.dtype)], dim=2)
        mask = torch.cat([mask, mask.new_ones(tokens.shape[:3])], dim=2)
    return rearrange(text, "b f m d -> (b f) m d"), rearrange(mask, "b f m -> (b f) m")


class ProjectionHead(nn.Module):
    """g_theta of the h-space contrastive loss (§3.4, App. A): an MLP (c h w) -> c -> c -> c with
    SiLU between the linear layers; used only in training."""

    def __init__(self, channels: int, height: int, width: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(channels * height * width, channels), nn.SiLU(),
                                 nn.Linear(channels, channels), nn.SiLU(), nn.Linear(channels, channels))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(rearrange(h, "n c h w -> n (c h w)"))
