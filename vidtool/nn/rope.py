"""Positions of a (t, h, w) token grid: 3-D rotary embeddings (RoPE, Su et al. 2021) and the
additive 3-D sinusoidal table that MotionAura's App. D.6 compares them with.

The head dimension is split in three bands, one per axis; each band rotates pairs of channels by
angles position × frequency, so attention scores depend on relative offsets along t, h and w.
"""

from __future__ import annotations

import torch
from einops import rearrange

from vidtool.nn.temporal_blocks import sinusoidal_table


def grid_positions(frames: int, height: int, width: int, device: torch.device | None = None) -> torch.Tensor:
    """[frames·height·width, 3] integer (t, h, w) coordinates in the row-major order of `rearrange(
    "b t h w -> b (t h w)")`."""
    t, h, w = torch.meshgrid(torch.arange(frames, device=device), torch.arange(height, device=device),
                             torch.arange(width, device=device), indexing="ij")
    return torch.stack([t.flatten(), h.flatten(), w.flatten()], dim=-1)


def _bands(head_dim: int) -> list[int]:
    """Channels per axis, each even, summing to head_dim (time gets the remainder)."""
    assert head_dim % 2 == 0 and head_dim >= 6, f"RoPE over (t, h, w) needs an even head dim ≥ 6, got {head_dim}"
    spatial = (head_dim // 3) // 2 * 2
    return [head_dim - 2 * spatial, spatial, spatial]


def rope_angles(positions: torch.Tensor, head_dim: int, base: float = 10000.0) -> torch.Tensor:
    """positions [S, 3] → angles [S, head_dim / 2], one per rotated channel pair."""
    angles = []
    for axis, band in enumerate(_bands(head_dim)):
        frequencies = base ** (-torch.arange(0, band, 2, device=positions.device, dtype=torch.float32) / band)
        angles.append(positions[:, axis, None].float() * frequencies[None])
    return torch.cat(angles, dim=-1)


def apply_rope(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate x [..., S, head_dim] by angles [S, head_dim / 2] (pairs are adjacent channels)."""
    pairs = rearrange(x.float(), "... (d two) -> ... d two", two=2)
    cos, sin = angles.cos(), angles.sin()
    first, second = pairs[..., 0], pairs[..., 1]
    rotated = torch.stack([first * cos - second * sin, first * sin + second * cos], dim=-1)
    return rearrange(rotated, "... d two -> ... (d two)").to(x.dtype)


def sinusoidal_positions(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """Additive table [S, dim]: the sum of per-axis sinusoids of (t, h, w) (the ablation's encoding)."""
    rows = int(positions.max()) + 1
    table = sinusoidal_table(rows, dim).to(positions.device)
    return table[positions[:, 0]] + table[positions[:, 1]] + table[positions[:, 2]]
