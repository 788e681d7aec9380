"""Building blocks of the Cross-modal Video VAE (`vidtool.autoencoders.cm_vae`).

The temporal-aware spatial autoencoder mirrors diffusers' `AutoencoderKL` (Encoder / Decoder /
ResnetBlock2D / UNetMidBlock2D) module for module and name for name, with every 2D conv inflated to a
(1, 3, 3) Conv3d, so a 2D VAE's state dict loads into it by adding a unit time axis. Everything
temporal is an *addition* that starts as the identity (zero-initialised residual branches), so the
inflated model computes exactly the 2D VAE frame by frame until training moves it (§3.2).

Every module that mixes frames takes `temporal: bool`; image batches (T == 1) pass False and the
temporal convs and temporal attention are skipped (§3.4).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn


class FrameGroupNorm(nn.GroupNorm):
    """GroupNorm whose statistics are taken per frame, as the inflated 2D VAE saw them.

    A plain GroupNorm on [B, C, T, H, W] would pool over time, so a frame's features would depend on
    the other frames even with every temporal layer off; per frame, images and videos share one
    normalisation and the inflated model reproduces the 2D VAE."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        x = super().forward(rearrange(x, "b c t h w -> (b t) c h w"))
        return rearrange(x, "(b t) c h w -> b c t h w", b=b)


def spatial_conv(c_in: int, c_out: int, kernel: int = 3, stride: int = 1, padding: int | None = None) -> nn.Conv3d:
    """A 2D conv inflated to 3D: kernel (1, k, k), so weights [O, I, k, k] load as [O, I, 1, k, k]."""
    padding = kernel // 2 if padding is None else padding
    return nn.Conv3d(c_in, c_out, (1, kernel, kernel), stride=(1, stride, stride), padding=(0, padding, padding))


class TemporalConv(nn.Module):
    """The temporal half of STBlock3D (§3.2, Fig. 3): norm -> SiLU -> Conv3d(kt, ks, ks) added back.

    The conv is zero-initialised, so the block starts as the identity and the inflated model starts
    as the 2D VAE per frame; the paper's best kernel is (7, 3, 3) (Table 4)."""

    def __init__(self, channels: int, kernel: tuple[int, int, int], groups: int):
        super().__init__()
        self.norm = FrameGroupNorm(groups, channels, eps=1e-6)
        self.conv = nn.Conv3d(channels, channels, kernel, padding=tuple(k // 2 for k in kernel))
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(F.silu(self.norm(x)))


class STResnetBlock(nn.Module):
    """diffusers' ResnetBlock2D with each 3x3 conv made an STBlock3D: (1,3,3) conv, then temporal conv."""

    def __init__(self, c_in: int, c_out: int, *, groups: int, temporal_kernel: tuple[int, int, int]):
        super().__init__()
        self.norm1 = FrameGroupNorm(groups, c_in, eps=1e-6)
        self.conv1 = spatial_conv(c_in, c_out)
        self.conv1_temporal = TemporalConv(c_out, temporal_kernel, groups)
        self.norm2 = FrameGroupNorm(groups, c_out, eps=1e-6)
        self.conv2 = spatial_conv(c_out, c_out)
        self.conv2_temporal = TemporalConv(c_out, temporal_kernel, groups)
        self.conv_shortcut = spatial_conv(c_in, c_out, kernel=1) if c_in != c_out else None

    def forward(self, x: torch.Tensor, temporal: bool) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        if temporal:
            h = self.conv1_temporal(h)
        h = self.conv2(F.silu(self.norm2(h)))
        if temporal:
            h = self.conv2_temporal(h)
        return (x if self.conv_shortcut is None else self.conv_shortcut(x)) + h


class Downsample(nn.Module):
    """x2 spatial only (the spatial AE never compresses time); diffusers pads right/bottom by one."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = spatial_conv(channels, channels, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = spatial_conv(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=(1.0, 2.0, 2.0), mode="nearest"))


class SpatialAttention(nn.Module):
    """The 2D VAE's single-head mid-block self-attention, applied to each frame on its own."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.group_norm = nn.GroupNorm(groups, channels, eps=1e-6)
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        self.to_out = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, _, h, _ = x.shape
        tokens = rearrange(self.group_norm(rearrange(x, "b c t h w -> (b t) c h w")), "n c h w -> n 1 (h w) c")
        # [batch, heads, length, dim]: the layout SDPA's fused kernels take (3-D inputs fall back to the math path)
        out = F.scaled_dot_product_attention(self.to_q(tokens), self.to_k(tokens), self.to_v(tokens))
        return x + rearrange(self.to_out(out), "(b t) 1 (h w) c -> b c t h w", b=b, h=h)


def sinusoidal_positions(length: int, channels: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """[length, channels] fixed sin/cos table (Transformer), so temporal attention knows frame order."""
    half = channels // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=device, dtype=torch.float32) / max(half, 1))
    angles = torch.arange(length, device=device, dtype=torch.float32)[:, None] * freqs[None]
    table = torch.cat([angles.sin(), angles.cos()], dim=-1)
    return F.pad(table, (0, channels - 2 * half)).to(dtype)


class TemporalAttention(nn.Module):
    """Self-attention across frames at each pixel of the mid block (§3.2 Option 1, kept in ours).

    Zero-initialised output projection: starts as the identity, like the temporal convs."""

    def __init__(self, channels: int, groups: int, head_dim: int = 64):
        super().__init__()
        self.heads = max(1, channels // head_dim)
        self.norm = FrameGroupNorm(groups, channels, eps=1e-6)
        self.to_qkv = nn.Linear(channels, 3 * channels)
        self.to_out = nn.Linear(channels, channels)
        nn.init.zeros_(self.to_out.weight)
        nn.init.zeros_(self.to_out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        tokens = rearrange(self.norm(x), "b c t h w -> (b h w) t c")
        tokens = tokens + sinusoidal_positions(t, c, x.device, x.dtype)
        q, k, v = rearrange(self.to_qkv(tokens), "n t (three heads d) -> three n heads t d", three=3, heads=self.heads)
        out = rearrange(F.scaled_dot_product_attention(q, k, v), "n heads t d -> n t (heads d)")
        return x + rearrange(self.to_out(out), "(b h w) t c -> b c t h w", b=b, h=h, w=w)


class TextCrossAttention(nn.Module):
    """Cross-modal attention on patches (§3.3).

    Each frame's feature map is cut into p x p patches (p = 8, 4, 2, 1 by level in the spatial AE,
    1 in the temporal AE); a LayerNorm'd patch vector is one visual token. The paper says "visual
    tokens as query (Q) and value (V), the text embeddings as key (K)", but attention weights are
    indexed by key positions, so values must come from the same tokens as keys: a value per visual
    token cannot be mixed by weights over text tokens. We therefore read it as the authors' release
    does: visual tokens give the queries, text embeddings give keys and values. The result is mapped
    back to a p x p patch by a linear projection (a p x p, stride-p transposed conv: the paper's
    "projection convolution"), zero-initialised, and added to the input (residual)."""

    def __init__(self, channels: int, patch_size: int, text_dim: int, *, heads: int, head_dim: int):
        super().__init__()
        self.patch_size = patch_size
        self.heads = heads
        patch_dim = channels * patch_size * patch_size
        self.norm = nn.LayerNorm(patch_dim)
        self.to_q = nn.Linear(patch_dim, heads * head_dim, bias=False)
        self.to_k = nn.Linear(text_dim, heads * head_dim, bias=False)
        self.to_v = nn.Linear(text_dim, heads * head_dim, bias=False)
        self.proj_out = nn.Linear(heads * head_dim, patch_dim)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, x: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor | None) -> torch.Tensor:
        b, _, t, h, w = x.shape
        p = self.patch_size
        assert h % p == 0 and w % p == 0, f"feature map {h}x{w} is not divisible by the text patch size {p}"
        tokens = rearrange(x, "b c t (nh ph) (nw pw) -> (b t) (nh nw) (ph pw c)", ph=p, pw=p)
        q = rearrange(self.to_q(self.norm(tokens)), "n l (heads d) -> n heads l d", heads=self.heads)
        k, v = (rearrange(proj(text), "b l (heads d) -> b heads l d", heads=self.heads) for proj in (self.to_k, self.to_v))
        k, v = (repeat(z, "b heads l d -> (b t) heads l d", t=t) for z in (k, v))
        mask = None if text_mask is None else repeat(text_mask.bool(), "b l -> (b t) 1 1 l", t=t)
        out = rearrange(F.scaled_dot_product_attention(q, k, v, attn_mask=mask), "n heads l d -> n l (heads d)")
        out = rearrange(self.proj_out(out), "(b t) (nh nw) (ph pw c) -> b c t (nh ph) (nw pw)",
                        b=b, nh=h // p, ph=p, pw=p)
        return x + out


class TextAttentions(nn.Module):
    """One optional `TextCrossAttention` per ResNet block of a level; empty when text is off."""

    def __init__(self, count: int, channels: int, patch_size: int, text_dim: int | None, heads: int, head_dim: int):
        super().__init__()
        self.layers = nn.ModuleList(
            [] if text_dim is None else
            [TextCrossAttention(channels, patch_size, text_dim, heads=heads, head_dim=head_dim) for _ in range(count)]
        )

    def forward(self, i: int, x: torch.Tensor, text: torch.Tensor | None, text_mask: torch.Tensor | None) -> torch.Tensor:
        if text is None or not self.layers:
            return x
        return self.layers[i](x, text, text_mask)


class MidBlock(nn.Module):
    """UNetMidBlock2D (resnet, attention, resnet) plus a temporal attention after the spatial one."""

    def __init__(self, channels: int, *, groups: int, temporal_kernel: tuple[int, int, int]):
        super().__init__()
        self.resnets = nn.ModuleList([STResnetBlock(channels, channels, groups=groups, temporal_kernel=temporal_kernel)
                                      for _ in range(2)])
        self.attentions = nn.ModuleList([SpatialAttention(channels, groups)])
        self.temporal_attention = TemporalAttention(channels, groups)

    def forward(self, x: torch.Tensor, temporal: bool) -> torch.Tensor:
        x = self.attentions[0](self.resnets[0](x, temporal))
        if temporal:
            x = self.temporal_attention(x)
        return self.resnets[1](x, temporal)


class SpatialLevel(nn.Module):
    """One resolution of the spatial encoder or decoder: ResNet blocks (each followed by its text
    cross-attention when text is on), then an optional resampler."""

    def __init__(self, c_in: int, c_out: int, layers: int, *, resample: str | None, groups: int,
                 temporal_kernel: tuple[int, int, int], text_dim: int | None, patch_size: int,
                 text_heads: int, text_head_dim: int):
        super().__init__()
        self.resnets = nn.ModuleList([
            STResnetBlock(c_in if i == 0 else c_out, c_out, groups=groups, temporal_kernel=temporal_kernel)
            for i in range(layers)
        ])
        self.text_attentions = TextAttentions(layers, c_out, patch_size, text_dim, text_heads, text_head_dim)
        # diffusers' names: `downsamplers.0` in the encoder, `upsamplers.0` in the decoder.
        self.downsamplers = nn.ModuleList([Downsample(c_out)] if resample == "down" else [])
        self.upsamplers = nn.ModuleList([Upsample(c_out)] if resample == "up" else [])

    def forward(self, x: torch.Tensor, temporal: bool, text: torch.Tensor | None, text_mask: torch.Tensor | None):
        for i, resnet in enumerate(self.resnets):
            x = self.text_attentions(i, resnet(x, temporal), text, text_mask)
        for resampler in (*self.downsamplers, *self.upsamplers):
            x = resampler(x)
        return x


class SpatialEncoder(nn.Module):
    """E1 (§3.2 Eq. 2): x8 spatial, no temporal compression; outputs 2c "moments" like the 2D VAE."""

    def __init__(self, *, block_out_channels: tuple[int, ...], layers_per_block: int, groups: int,
                 latent_channels: int, temporal_kernel: tuple[int, int, int], text_dim: int | None,
                 text_patch_sizes: tuple[int, ...], text_heads: int, text_head_dim: int):
        super().__init__()
        levels = len(block_out_channels)
        self.conv_in = spatial_conv(3, block_out_channels[0])
        self.down_blocks = nn.ModuleList([
            SpatialLevel(block_out_channels[max(i - 1, 0)], block_out_channels[i], layers_per_block,
                         resample="down" if i < levels - 1 else None, groups=groups,
                         temporal_kernel=temporal_kernel, text_dim=text_dim, patch_size=text_patch_sizes[i],
                         text_heads=text_heads, text_head_dim=text_head_dim)
            for i in range(levels)
        ])
        self.mid_block = MidBlock(block_out_channels[-1], groups=groups, temporal_kernel=temporal_kernel)
        self.conv_norm_out = FrameGroupNorm(groups, block_out_channels[-1], eps=1e-6)
        self.conv_out = spatial_conv(block_out_channels[-1], 2 * latent_channels)

    def forward(self, x, temporal: bool, text=None, text_mask=None) -> torch.Tensor:
        x = self.conv_in(x)
        for level in self.down_blocks:
            x = level(x, temporal, text, text_mask)
        x = self.mid_block(x, temporal)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


class SpatialDecoder(nn.Module):
    """D1 (§3.2 Eq. 4): mirrors the 2D VAE decoder, `layers_per_block + 1` ResNet blocks per level."""

    def __init__(self, *, block_out_channels: tuple[int, ...], layers_per_block: int, groups: int,
                 latent_channels: int, temporal_kernel: tuple[int, int, int], text_dim: int | None,
                 text_patch_sizes: tuple[int, ...], text_heads: int, text_head_dim: int):
        super().__init__()
        levels = len(block_out_channels)
        widths = list(reversed(block_out_channels))
        self.conv_in = spatial_conv(latent_channels, widths[0])
        self.mid_block = MidBlock(widths[0], groups=groups, temporal_kernel=temporal_kernel)
        # up_blocks[i] works at resolution level (levels - 1 - i), so its patch size is that level's.
        self.up_blocks = nn.ModuleList([
            SpatialLevel(widths[max(i - 1, 0)], widths[i], layers_per_block + 1,
                         resample="up" if i < levels - 1 else None, groups=groups,
                         temporal_kernel=temporal_kernel, text_dim=text_dim,
                         patch_size=text_patch_sizes[levels - 1 - i], text_heads=text_heads,
                         text_head_dim=text_head_dim)
            for i in range(levels)
        ])
        self.conv_norm_out = FrameGroupNorm(groups, block_out_channels[0], eps=1e-6)
        self.conv_out = spatial_conv(block_out_channels[0], 3)

    def forward(self, z, temporal: bool, text=None, text_mask=None) -> torch.Tensor:
        x = self.mid_block(self.conv_in(z), temporal)
        for level in self.up_blocks:
            x = level(x, temporal, text, text_mask)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


def temporal_conv3d(c_in: int, c_out: int, stride_t: int = 1) -> nn.Conv3d:
    """3x3x3 conv of the temporal AE; replicate padding, so clip ends are not pulled toward zero."""
    return nn.Conv3d(c_in, c_out, 3, stride=(stride_t, 1, 1), padding=1, padding_mode="replicate")


class ResBlock3D(nn.Module):
    """Plain 3D ResNet block of the temporal AE (§3.2 Option 2). Its norms take statistics per
    frame: pooled over time they would let every output frame depend on the whole clip, and a
    clip decoded in temporal chunks would then differ from the clip decoded whole."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.norm1 = FrameGroupNorm(groups, channels, eps=1e-6)
        self.conv1 = temporal_conv3d(channels, channels)
        self.norm2 = FrameGroupNorm(groups, channels, eps=1e-6)
        self.conv2 = temporal_conv3d(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.silu(self.norm2(self.conv1(F.silu(self.norm1(x))))))


class TemporalEncoder(nn.Module):
    """E2 (§3.2 Eq. 3): one conv, then per x2 of time a strided conv and a 3D ResNet block (each
    followed by per-pixel text cross-attention), then norm/SiLU/conv to the Z2 moments (mean, logvar)."""

    def __init__(self, *, latent_channels: int, widths: tuple[int, ...], groups: int, text_dim: int | None,
                 text_heads: int, text_head_dim: int):
        super().__init__()
        self.conv_in = temporal_conv3d(latent_channels, widths[0])
        self.downs = nn.ModuleList([temporal_conv3d(widths[i], widths[i + 1], stride_t=2) for i in range(len(widths) - 1)])
        self.resnets = nn.ModuleList([ResBlock3D(w, groups) for w in widths[1:]])
        self.text_attentions = nn.ModuleList([TextAttentions(1, w, 1, text_dim, text_heads, text_head_dim)
                                              for w in widths[1:]])
        self.norm_out = FrameGroupNorm(groups, widths[-1], eps=1e-6)
        self.conv_out = temporal_conv3d(widths[-1], 2 * latent_channels)

    def forward(self, z1, text=None, text_mask=None) -> torch.Tensor:
        x = self.conv_in(z1)
        for down, resnet, attention in zip(self.downs, self.resnets, self.text_attentions):
            x = attention(0, resnet(down(x)), text, text_mask)
        return self.conv_out(F.silu(self.norm_out(x)))


class TemporalUpLevel(nn.Module):
    """x2 nearest-neighbour upsampling in time + conv, then two 3D ResNet blocks: the asymmetric
    decoder of §3.2 (the encoder has one block per level)."""

    def __init__(self, c_in: int, c_out: int, groups: int, text_dim: int | None, text_heads: int, text_head_dim: int):
        super().__init__()
        self.conv = temporal_conv3d(c_in, c_out)
        self.resnets = nn.ModuleList([ResBlock3D(c_out, groups) for _ in range(2)])
        self.text_attentions = TextAttentions(2, c_out, 1, text_dim, text_heads, text_head_dim)

    def forward(self, x, text, text_mask) -> torch.Tensor:
        x = self.conv(F.interpolate(x, scale_factor=(2.0, 1.0, 1.0), mode="nearest"))
        for i, resnet in enumerate(self.resnets):
            x = self.text_attentions(i, resnet(x), text, text_mask)
        return x


class TemporalDecoder(nn.Module):
    """D2 (§3.2 Eq. 4): Z2 -> Z1."""

    def __init__(self, *, latent_channels: int, widths: tuple[int, ...], groups: int, text_dim: int | None,
                 text_heads: int, text_head_dim: int):
        super().__init__()
        widths = tuple(reversed(widths))
        self.conv_in = temporal_conv3d(latent_channels, widths[0])
        self.ups = nn.ModuleList([TemporalUpLevel(widths[i], widths[i + 1], groups, text_dim, text_heads, text_head_dim)
                                  for i in range(len(widths) - 1)])
        self.norm_out = FrameGroupNorm(groups, widths[-1], eps=1e-6)
        self.conv_out = temporal_conv3d(widths[-1], latent_channels)

    def forward(self, z2, text=None, text_mask=None) -> torch.Tensor:
        x = self.conv_in(z2)
        for up in self.ups:
            x = up(x, text, text_mask)
        return self.conv_out(F.silu(self.norm_out(x)))


class Discriminator3D(nn.Module):
    """3D PatchGAN for the video adversarial loss (§3.5, Table 4 "Video GAN Loss").

    Kernels (3, 4, 4) with padding 1 and temporal stride 2: a one-frame clip (T == 1) stays one
    frame deep, so image batches of joint training get patch logits from the same weights. GroupNorm
    rather than BatchNorm keeps the discriminator free of running statistics, so calling it with
    detached parameters for the generator's term changes nothing."""

    def __init__(self, channels: int = 64, layers: int = 3):
        super().__init__()
        modules: list[nn.Module] = [nn.Conv3d(3, channels, (3, 4, 4), stride=2, padding=1), nn.LeakyReLU(0.2)]
        width = channels
        for i in range(1, layers + 1):
            out = channels * 2 ** min(i, 3)
            stride = 2 if i < layers else 1
            modules += [nn.Conv3d(width, out, (3, 4, 4), stride=(stride, stride, stride), padding=1),
                        nn.GroupNorm(min(32, out // 4), out), nn.LeakyReLU(0.2)]
            width = out
        modules.append(nn.Conv3d(width, 1, (3, 4, 4), padding=1))
        self.net = nn.Sequential(*modules)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.net(video)
