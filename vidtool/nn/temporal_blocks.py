"""FusionFrames' temporal components (§4.1, Fig. 3): convolutions and attention along time, for a
frozen text-to-image U-Net that runs on the frames of a clip as a batch of images.

Every module here maps a clip [B, C, T, h, w] to the same shape as x + f(x), where the last
projection of f starts at zero, so an untrained temporal part is the identity and the video model
starts as the image model frame by frame (§5: only the temporal parts are trained).

    TemporalConvBlock   "Temporal Conv1D Block": (norm, SiLU, 3x1x1 conv) twice          (Fig. 3 middle)
    TemporalConv3dBlock "Temporal Conv3D Block": Linear down, (norm, SiLU, 3x3x3 conv) twice,
                        Linear up — the projections keep the parameter count near the Conv1D
                        block's (§4.1)
    TemporalConvLayer   one (norm, SiLU, 3x1x1 conv) inside a spatial ResNet block (Fig. 3 left)
    TemporalAttention   self-attention over the T frames of one position ("Attn1D", window 1) or
                        over a window of 2x2 positions across all T frames ("Attn3D", window 2;
                        MaxViT's block attention, §4.1); frame-position embeddings enter here
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn


def _zero_(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def _norm_act_conv(channels: int, groups: int, kernel: tuple[int, int, int]) -> list[nn.Module]:
    """The "NA" pre-normalisation with activation of Fig. 3, then a 3D conv over (t, h, w)."""
    return [nn.GroupNorm(groups, channels), nn.SiLU(),
            nn.Conv3d(channels, channels, kernel, padding=tuple(k // 2 for k in kernel))]


class TemporalConvBlock(nn.Module):
    """x + (NA, 3x1x1 conv, NA, 3x1x1 conv)(x): each latent position mixes with itself at t - 1, t + 1."""

    def __init__(self, channels: int, *, groups: int):
        super().__init__()
        layers = _norm_act_conv(channels, groups, (3, 1, 1)) + _norm_act_conv(channels, groups, (3, 1, 1))
        _zero_(layers[-1])
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layers(x)


def reduced_width(channels: int, reduction: int, groups: int) -> int:
    """The Conv3D block's inner width: channels / reduction, rounded to a multiple of the norm groups.

    Two 3x3x3 convs at width d cost 54 d^2 weights against the Conv1D block's 6 C^2, so d = C / 3
    keeps the two blocks comparable, as §4.1 asks of the Linear projections."""
    return max(groups, round(channels / reduction / groups) * groups)


class TemporalConv3dBlock(nn.Module):
    """x + up(NA, 3x3x3 conv, NA, 3x3x3 conv)(down(x)), with Linear down/up projections of the channels."""

    def __init__(self, channels: int, *, groups: int, reduction: int = 3):
        super().__init__()
        width = reduced_width(channels, reduction, groups)
        self.down = nn.Linear(channels, width)
        self.layers = nn.Sequential(*_norm_act_conv(width, groups, (3, 3, 3)), *_norm_act_conv(width, groups, (3, 3, 3)))
        self.up = _zero_(nn.Linear(width, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = rearrange(self.down(rearrange(x, "b c t h w -> b t h w c")), "b t h w c -> b c t h w")
        h = rearrange(self.layers(h), "b c t h w -> b t h w c")
        return x + rearrange(self.up(h), "b t h w c -> b c t h w")


class TemporalConvLayer(nn.Module):
    """x + (NA, 3x1x1 conv)(x): the temporal layer the mixed baseline puts after a spatial conv."""

    def __init__(self, channels: int, *, groups: int):
        super().__init__()
        layers = _norm_act_conv(channels, groups, (3, 1, 1))
        _zero_(layers[-1])
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layers(x)


class TemporalAttention(nn.Module):
    """x + out(attention(norm(x) + position)) over groups of `window` x `window` positions x T frames.

    `positions` [B, T, P] are the frame-position embeddings of the clip's frames (rows of a table
    shared by the whole model); each block projects them to its width and adds them to its
    normalised tokens, because attention, unlike a convolution, cannot otherwise tell frame order.
    """

    def __init__(self, channels: int, *, heads: int, position_dim: int, window: int = 1):
        super().__init__()
        assert channels % heads == 0, f"temporal attention: {channels} channels do not split into {heads} heads"
        self.heads, self.window = heads, window
        self.norm = nn.LayerNorm(channels)
        self.position = nn.Linear(position_dim, channels)
        self.qkv = nn.Linear(channels, 3 * channels, bias=False)
        self.out = _zero_(nn.Linear(channels, channels))

    def forward(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        b, _, t, h, w = x.shape
        n = self.window
        assert h % n == 0 and w % n == 0, (
            f"Attn3D windows of {n}x{n} need a feature map divisible by {n}; got {h}x{w} (use an Attn1D variant)")
        tokens = rearrange(x, "b c t (h p) (w q) -> (b h w) (t p q) c", p=n, q=n)
        position = repeat(self.position(positions), "b t c -> (b g) (t k) c", g=(h // n) * (w // n), k=n * n)
        q, k, v = rearrange(self.qkv(self.norm(tokens) + position), "g l (three m d) -> three g m l d",
                            three=3, m=self.heads)
        mixed = rearrange(F.scaled_dot_product_attention(q, k, v), "g m l d -> g l (m d)")
        tokens = tokens + self.out(mixed)
        return rearrange(tokens, "(b h w) (t p q) c -> b c t (h p) (w q)", b=b, h=h // n, p=n, q=n)


def sinusoidal_table(rows: int, dim: int) -> torch.Tensor:
    """Transformer sinusoids (Vaswani et al. 2017) [rows, dim]: the frame-position table's start, so
    nearby frame positions begin with similar embeddings before training refines them."""
    assert dim % 2 == 0, f"position_dim must be even, got {dim}"
    frequencies = torch.exp(-math.log(10000.0) * torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    angles = torch.arange(rows, dtype=torch.float64)[:, None] * frequencies[None]
    return rearrange(torch.stack([angles.sin(), angles.cos()], dim=-1), "r d two -> r (d two)").float()
