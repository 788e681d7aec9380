"""Layers of the MoVQ image autoencoder (Zheng et al. 2022) and of its FusionFrames video decoder.

Frames travel through both networks as images, [(b t), c, h, w]; a layer that mixes time is told the
clip length `frames` and unfolds it with einops. The 2D layers never look across frames, so with
every temporal layer at its zero initialisation the video decoder computes the image decoder on each
frame (FusionFrames §4.3: "All additional parameters are initialized with zeros").

Where temporal layers sit follows the FusionFrames video MoVQ release (ai-forever/KandinskyVideo):
- "conv1x1x3" / "conv3x3x3": a residual temporal conv after *each* 3x3 conv of every decoder ResNet
  block (two per block) — the only placement whose parameter count reproduces Table 3's
  161M -> 203M (3x1x1) and 161M -> 539M (3x3x3) at Kandinsky's MoVQ shape;
- "resblock_attn": a temporal ResNet block (two 3x1x1 convs) after every decoder ResNet block;
- temporal attention: after every spatial attention of the decoder (mid block, lowest level);
- "conv2d_to_3d": the two 3x3 convs of every decoder ResNet block become 3x3x3 convs. Shortcuts,
  up-sampling convs and conv_in/conv_out stay 2D, as in the release.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

TEMPORAL_KINDS = ("none", "conv1x1x3", "conv3x3x3", "resblock_attn", "conv2d_to_3d")
TEMPORAL_CONV_KERNELS = {"conv1x1x3": (3, 1, 1), "conv3x3x3": (3, 3, 3)}


def is_temporal(name: str) -> bool:
    """Whether a parameter name belongs to a temporal layer (every such module is named temporal*)."""
    return any(part.startswith("temporal") for part in name.split("."))


def _zero_(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class SpatialNorm(nn.Module):
    """MoVQ's spatially conditional normalisation (Zheng et al. 2022):
    GroupNorm(x) * conv_y(zq) + conv_b(zq), zq the quantized latent upsampled (nearest) to x's size.

    Without `latent_channels` it is a plain GroupNorm (the encoder's), so blocks are shared."""

    def __init__(self, channels: int, groups: int, latent_channels: int | None = None):
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        self.conditioned = latent_channels is not None
        if self.conditioned:
            self.conv_y = nn.Conv2d(latent_channels, channels, 1)
            self.conv_b = nn.Conv2d(latent_channels, channels, 1)

    def forward(self, x: torch.Tensor, zq: torch.Tensor | None = None) -> torch.Tensor:
        # contiguous(): torch 2.13's CPU GroupNorm backward crashes (SIGSEGV) on a channels-last input
        # that does not require grad — a frozen layer's output, since codebook lookups and einops
        # views hand channels-last tensors downstream.
        normed = self.norm(x.contiguous())
        if not self.conditioned:
            return normed
        zq = F.interpolate(zq, size=x.shape[-2:], mode="nearest")
        return normed * self.conv_y(zq) + self.conv_b(zq)


class FrameConv2d(nn.Conv2d):
    """A 3x3 conv on each frame; takes (and ignores) `frames` so it swaps with `InflatedConv3d`."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(in_channels, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, frames: int | None = None) -> torch.Tensor:
        return super().forward(x)


class InflatedConv3d(nn.Conv3d):
    """FusionFrames Table 3 "2D -> 3D Conv": a 3x3 spatial conv turned into a 3x3x3 conv over
    (t, h, w). Its centre time tap holds the 2D kernel and the other taps start at zero, so at
    initialisation it equals the 2D conv on every frame (`MoVQTemporal.from_image_model` copies the
    image decoder's 2D kernel into that tap)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(in_channels, out_channels, 3, padding=1)

    def reset_parameters(self) -> None:
        flat = torch.empty(self.out_channels, self.in_channels, 3, 3, device=self.weight.device)
        nn.init.kaiming_uniform_(flat, a=math.sqrt(5))  # nn.Conv2d's default initialisation
        with torch.no_grad():
            self.weight.zero_()
            self.weight[:, :, 1] = flat
            bound = 1 / math.sqrt(self.in_channels * 9)
            self.bias.uniform_(-bound, bound)

    def forward(self, x: torch.Tensor, frames: int | None = None) -> torch.Tensor:
        clip = rearrange(x, "(b t) c h w -> b c t h w", t=frames)
        return rearrange(super().forward(clip), "b c t h w -> (b t) c h w")


class TemporalConv(nn.Module):
    """x + conv3d(x) over (t, h, w) with a (3, 1, 1) or (3, 3, 3) kernel, zero-initialised (§4.3).

    The release blends (1 - a) * x + a * conv(x) with a zero-initialised scalar a; a residual with a
    zero conv is the same function at initialisation and needs no extra scalar."""

    def __init__(self, channels: int, kernel: tuple[int, int, int]):
        super().__init__()
        self.conv = _zero_(nn.Conv3d(channels, channels, kernel, padding=tuple(k // 2 for k in kernel)))

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        clip = rearrange(x, "(b t) c h w -> b c t h w", t=frames)
        return x + rearrange(self.conv(clip), "b c t h w -> (b t) c h w")


class ResnetBlock(nn.Module):
    """VQGAN's ResNet block: (norm, SiLU, 3x3 conv) twice plus a shortcut; MoVQ's decoder
    conditions both norms on the quantized latent. `temporal` adds a zero-initialised temporal conv
    after each 3x3 conv ("conv1x1x3", "conv3x3x3") or inflates the 3x3 convs ("conv2d_to_3d")."""

    def __init__(self, in_channels: int, out_channels: int, *, groups: int, latent_channels: int | None = None,
                 temporal: str = "none"):
        super().__init__()
        conv = InflatedConv3d if temporal == "conv2d_to_3d" else FrameConv2d
        kernel = TEMPORAL_CONV_KERNELS.get(temporal)
        self.norm1 = SpatialNorm(in_channels, groups, latent_channels)
        self.conv1 = conv(in_channels, out_channels)
        self.temporal1 = TemporalConv(out_channels, kernel) if kernel else None
        self.norm2 = SpatialNorm(out_channels, groups, latent_channels)
        self.conv2 = conv(out_channels, out_channels)
        self.temporal2 = TemporalConv(out_channels, kernel) if kernel else None
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor, zq: torch.Tensor | None = None, frames: int | None = None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x, zq)), frames)
        if self.temporal1 is not None:
            h = self.temporal1(h, frames)
        h = self.conv2(F.silu(self.norm2(h, zq)), frames)
        if self.temporal2 is not None:
            h = self.temporal2(h, frames)
        return self.shortcut(x) + h


class SpatialAttention(nn.Module):
    """Single-head self-attention over the h*w positions of each frame (VQGAN's AttnBlock)."""

    def __init__(self, channels: int, *, groups: int, latent_channels: int | None = None):
        super().__init__()
        self.norm = SpatialNorm(channels, groups, latent_channels)
        self.to_qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.to_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor, zq: torch.Tensor | None = None) -> torch.Tensor:
        h, w = x.shape[-2:]
        q, k, v = rearrange(self.to_qkv(self.norm(x, zq)), "n (three c) h w -> three n 1 (h w) c", three=3)
        out = F.scaled_dot_product_attention(q, k, v)
        return x + self.to_out(rearrange(out, "n 1 (h w) c -> n c h w", h=h, w=w))


class TemporalAttention(nn.Module):
    """Single-head self-attention over the frames at each position (the release's TemporalAttnBlock);
    the output projection is zero-initialised, so the block starts as the identity. Zeroing q, k and
    v as well would leave v and the output projection at a saddle where neither gets a gradient."""

    def __init__(self, channels: int, *, groups: int, latent_channels: int):
        super().__init__()
        self.norm = SpatialNorm(channels, groups, latent_channels)
        self.to_qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.to_out = _zero_(nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor, zq: torch.Tensor, frames: int) -> torch.Tensor:
        h, w = x.shape[-2:]
        qkv = rearrange(self.to_qkv(self.norm(x, zq)), "(b t) (three c) h w -> three (b h w) 1 t c", t=frames, three=3)
        out = F.scaled_dot_product_attention(*qkv)
        return x + self.to_out(rearrange(out, "(b h w) 1 t c -> (b t) c h w", h=h, w=w))


class TemporalResnetBlock(nn.Module):
    """Temporal ResNet block: (spatial norm, SiLU, 3x1x1 conv) twice plus identity; the second conv is
    zero-initialised, so the block starts as the identity (Table 3 "ResNet Block")."""

    def __init__(self, channels: int, *, groups: int, latent_channels: int):
        super().__init__()
        self.norm1 = SpatialNorm(channels, groups, latent_channels)
        self.conv1 = nn.Conv3d(channels, channels, (3, 1, 1), padding=(1, 0, 0))
        self.norm2 = SpatialNorm(channels, groups, latent_channels)
        self.conv2 = _zero_(nn.Conv3d(channels, channels, (3, 1, 1), padding=(1, 0, 0)))

    def _temporal_conv(self, conv: nn.Conv3d, x: torch.Tensor, frames: int) -> torch.Tensor:
        return rearrange(conv(rearrange(x, "(b t) c h w -> b c t h w", t=frames)), "b c t h w -> (b t) c h w")

    def forward(self, x: torch.Tensor, zq: torch.Tensor, frames: int) -> torch.Tensor:
        h = self._temporal_conv(self.conv1, F.silu(self.norm1(x, zq)), frames)
        h = self._temporal_conv(self.conv2, F.silu(self.norm2(h, zq)), frames)
        return x + h


class Downsample(nn.Module):
    """x1/2: stride-2 3x3 conv with VQGAN's asymmetric (right, bottom) padding."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """x2: nearest neighbour, then a 3x3 conv (kept 2D in every video variant, as in the release)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class EncoderLevel(nn.Module):
    """One resolution of the encoder: ResNet blocks (each followed by spatial attention on the lowest
    level), then the x2 downsampling. A module with a forward so that the trainer's activation
    checkpointing and FSDP units (vidtool.train.parallel) are levels."""

    def __init__(self, width: int, out: int, *, layers_per_block: int, groups: int, lowest: bool):
        super().__init__()
        self.blocks = nn.ModuleList(ResnetBlock(width if j == 0 else out, out, groups=groups)
                                    for j in range(layers_per_block))
        self.attentions = nn.ModuleList(SpatialAttention(out, groups=groups)
                                        for _ in range(layers_per_block if lowest else 0))
        self.downsample = None if lowest else Downsample(out)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for j, block in enumerate(self.blocks):
            h = block(h)
            if self.attentions:
                h = self.attentions[j](h)
        if self.downsample is not None:
            h = self.downsample(h)
        return h


class Encoder(nn.Module):
    """VQGAN / MoVQ encoder: images [N, 3, H, W] -> [N, latent_channels, H/f, W/f], f = 2**(levels-1).
    `layers_per_block` ResNet blocks per level, spatial attention after each block of the lowest level."""

    def __init__(self, *, widths: tuple[int, ...], layers_per_block: int, groups: int, latent_channels: int):
        super().__init__()
        self.conv_in = nn.Conv2d(3, widths[0], 3, padding=1)
        self.levels = nn.ModuleList()
        width = widths[0]
        for i, out in enumerate(widths):
            self.levels.append(EncoderLevel(width, out, layers_per_block=layers_per_block, groups=groups,
                                            lowest=i == len(widths) - 1))
            width = out
        self.mid_block_1 = ResnetBlock(width, width, groups=groups)
        self.mid_attention = SpatialAttention(width, groups=groups)
        self.mid_block_2 = ResnetBlock(width, width, groups=groups)
        self.norm_out = SpatialNorm(width, groups)
        self.conv_out = nn.Conv2d(width, latent_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.levels:
            h = level(h)
        h = self.mid_block_2(self.mid_attention(self.mid_block_1(h)))
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """MoVQ decoder, every norm a `SpatialNorm` on the quantized latent zq, optionally with the
    FusionFrames temporal layers (§4.3, Table 3). Levels run from the lowest resolution up, each
    with `layers_per_block + 1` ResNet blocks (VQGAN), spatial attention on the lowest level."""

    def __init__(self, *, widths: tuple[int, ...], layers_per_block: int, groups: int, latent_channels: int,
                 temporal: str = "none", temporal_attention: bool = False):
        super().__init__()
        norm = dict(groups=groups, latent_channels=latent_channels)
        resblocks = temporal == "resblock_attn"

        def block(cin: int, cout: int) -> ResnetBlock:
            return ResnetBlock(cin, cout, temporal=temporal, **norm)

        def temporal_blocks(width: int, count: int) -> nn.ModuleList:
            return nn.ModuleList(TemporalResnetBlock(width, **norm) for _ in range(count if resblocks else 0))

        def temporal_attentions(width: int, count: int) -> nn.ModuleList:
            return nn.ModuleList(TemporalAttention(width, **norm) for _ in range(count if temporal_attention else 0))

        width = widths[-1]
        self.conv_in = nn.Conv2d(latent_channels, width, 3, padding=1)
        self.mid = nn.Module()
        self.mid.blocks = nn.ModuleList([block(width, width), block(width, width)])
        self.mid.temporal_blocks = temporal_blocks(width, 2)
        self.mid.attention = SpatialAttention(width, **norm)
        self.mid.temporal_attentions = temporal_attentions(width, 1)

        self.levels = nn.ModuleList()
        count = layers_per_block + 1
        for i, out in enumerate(reversed(widths)):
            lowest, highest = i == 0, i == len(widths) - 1
            self.levels.append(DecoderLevel(
                blocks=nn.ModuleList(block(width if j == 0 else out, out) for j in range(count)),
                temporal_blocks=temporal_blocks(out, count),
                attentions=nn.ModuleList(SpatialAttention(out, **norm) for _ in range(count if lowest else 0)),
                temporal_attentions=temporal_attentions(out, count if lowest else 0),
                upsample=None if highest else Upsample(out),
            ))
            width = out
        self.norm_out = SpatialNorm(width, groups, latent_channels)
        self.conv_out = nn.Conv2d(width, 3, 3, padding=1)

    def forward(self, z: torch.Tensor, zq: torch.Tensor, frames: int) -> torch.Tensor:
        """z: post-quant-conv latent, zq: quantized latent, both [(b t), c, h, w]; frames = t."""
        h = self.conv_in(z)
        mid = self.mid
        h = self._after_block(mid, 0, mid.blocks[0](h, zq, frames), zq, frames)
        h = mid.attention(h, zq)
        if mid.temporal_attentions:
            h = mid.temporal_attentions[0](h, zq, frames)
        h = self._after_block(mid, 1, mid.blocks[1](h, zq, frames), zq, frames)
        for level in self.levels:
            h = level(h, zq, frames)
        return self.conv_out(F.silu(self.norm_out(h, zq)))

    @staticmethod
    def _after_block(stage: nn.Module, j: int, h: torch.Tensor, zq: torch.Tensor, frames: int) -> torch.Tensor:
        return stage.temporal_blocks[j](h, zq, frames) if stage.temporal_blocks else h


class DecoderLevel(nn.Module):
    """One resolution of the decoder: ResNet blocks, each followed by its temporal block, spatial and
    temporal attention where the level has them, then the x2 upsampling. A module with a forward so
    that the trainer's activation checkpointing and FSDP units (vidtool.train.parallel) are levels."""

    def __init__(self, *, blocks: nn.ModuleList, temporal_blocks: nn.ModuleList, attentions: nn.ModuleList,
                 temporal_attentions: nn.ModuleList, upsample: Upsample | None):
        super().__init__()
        self.blocks, self.temporal_blocks = blocks, temporal_blocks
        self.attentions, self.temporal_attentions = attentions, temporal_attentions
        self.upsample = upsample

    def forward(self, h: torch.Tensor, zq: torch.Tensor, frames: int) -> torch.Tensor:
        for j, block in enumerate(self.blocks):
            h = Decoder._after_block(self, j, block(h, zq, frames), zq, frames)
            if self.attentions:
                h = self.attentions[j](h, zq)
            if self.temporal_attentions:
                h = self.temporal_attentions[j](h, zq, frames)
        if self.upsample is not None:
            h = self.upsample(h)
        return h
