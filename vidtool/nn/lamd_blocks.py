"""Layers of LaMD's MCD-VAE (§3.1): 2D ResNet blocks for the image encoder, factorised (2+1)D blocks
for the motion encoder and the fusion decoder, the fusion layer (concat + 1x1 conv) and the
temporal interpolation block that restores the frames the motion latent folded away.

Video tensors are [B, C, T, H, W]; image tensors [B, C, H, W].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import repeat
from torch import nn


def group_norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(groups, channels), channels, eps=1e-6)


class ResBlock2d(nn.Module):
    def __init__(self, c_in: int, c_out: int, groups: int):
        super().__init__()
        self.norm1, self.conv1 = group_norm(c_in, groups), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2, self.conv2 = group_norm(c_out, groups), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class ResBlock3d(nn.Module):
    """A 3D ResNet block: two 3x3x3 convs, or with `factorized` a (2+1)D block, a (1, 3, 3) spatial
    conv then a (3, 1, 1) temporal conv (~2x cheaper on CPU at the same width)."""

    def __init__(self, c_in: int, c_out: int, groups: int, factorized: bool = False):
        super().__init__()
        first, second = ((1, 3, 3), (3, 1, 1)) if factorized else ((3, 3, 3), (3, 3, 3))
        self.norm1 = group_norm(c_in, groups)
        self.conv1 = nn.Conv3d(c_in, c_out, first, padding=tuple(k // 2 for k in first))
        self.norm2 = group_norm(c_out, groups)
        self.conv2 = nn.Conv3d(c_out, c_out, second, padding=tuple(k // 2 for k in second))
        self.skip = nn.Conv3d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class Downsample3d(nn.Module):
    """Strided (3, 3, 3) conv: x2 in space, and x2 in time when `temporal`."""

    def __init__(self, channels: int, temporal: bool):
        super().__init__()
        self.conv = nn.Conv3d(channels, channels, 3, stride=(2 if temporal else 1, 2, 2), padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample3d(nn.Module):
    """Nearest x2 in space (per frame) and a (1, 3, 3) conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv3d(channels, channels, (1, 3, 3), padding=(0, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=(1, 2, 2), mode="nearest"))


class FusionLayer(nn.Module):
    """LaMD Fig. 3: concatenate the video feature with the same-scale content feature of the first
    frame (the same for every frame) and bring the width back with a 1x1 conv."""

    def __init__(self, channels: int, content_channels: int):
        super().__init__()
        self.proj = nn.Conv3d(channels + content_channels, channels, 1)

    def forward(self, x: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
        content = repeat(content, "b c h w -> b c t h w", t=x.shape[2])
        return self.proj(torch.cat([x, content], dim=1))


class TemporalInterpolation(nn.Module):
    """LaMD §3.1.2: the motion latent has no time axis (r_t = L), so the decoder doubles the frame
    count with these blocks: linear interpolation x2 in time, then a (2+1)D ResNet block that turns
    the copies into distinct frames."""

    def __init__(self, channels: int, groups: int, factorized: bool = False):
        super().__init__()
        self.block = ResBlock3d(channels, channels, groups, factorized)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, h, w = x.shape[2:]
        x = F.interpolate(x, size=(2 * t, h, w), mode="trilinear", align_corners=False)
        return self.block(x)


__all__ = ["Downsample3d", "FusionLayer", "ResBlock2d", "ResBlock3d", "TemporalInterpolation", "Upsample3d",
           "group_norm"]
