"""LaMD's motion–content decomposed video autoencoder, MCD-VAE (LaMD §3.1, Fig. 2-3, Eq. 1-2).

    video x_{0:L} [B, 3, L, H, W] in [-1, 1]
      E_I (image encoder, 2D, on the first frame x_0): the contracting path of a 2D U-Net; one
          feature map per scale f^1..f^k (H, H/2, ..., H/r_s) for the decoder, and the content
          latent f_x0 [B, d', h, w] (h = H / r_s) that conditions the motion generator (DMG)
      E_M (motion encoder, light 3D U-Net contracting path): x2 in space per level (r_s) and x2 in
          time while frames remain; what is left of the time axis is folded into the channels, so
          r_t = L and z_m has no time axis; then a normalisation layer and the information
          bottleneck (Eq. 1) z_m = μ + ε·σ, z_m [B, d, h, w]
      D_V (fusion decoder, 3D U-Net expanding path): conv_in(z_m) at h x w, its channels unfolded
          into `decoder_latent_frames` frames (the inverse of E_M's fold); temporal interpolation
          blocks (x2 frames each) restore L frames at the coarsest scale; fusion layers (concat +
          1x1 conv) with the same-scale content feature before every ResNet block; x2 upsampling per
          level; an output conv -> x^_{0:L}

Normalisation layer (§3.1.1: "the obtained latent motion is passed through a normalization
layer ... to improve the stability ... of training the diffusion model"): μ is normalised over its
(d, h, w) values per clip, without an affine part, so every clip's motion latent has zero mean and
unit variance and the DMG sees latents of a fixed scale. The KL term then cannot shrink μ and acts
only on σ: the bottleneck's capacity is the signal-to-noise ratio of μ against σ, set by β.

Three switches for a model trained for minutes on a CPU, off in the paper presets and on in `tiny`:
`first_frame_residual` adds x_0 to the decoder's output for every frame, so the decoder predicts
changes from the given image (the first frame and the background come nearly free);
`mse_weight` adds a squared-error term: without LPIPS (no local weights), L1's gradient is ±1 on
every pixel, so the few pixels a small moving shape covers are drowned by the static ones and the
decoder settles on copying x_0; the squared error weighs pixels by their error;
`kl_warmup_steps` ramps β from 0, so the decoder learns to read z_m before the KL widens σ.

Loss (Eq. 2), `training_losses`:
    loss = L1(x, x^) + lpips_weight·LPIPS(x, x^) + mse_weight·MSE + β·KL(q(z_m|x) || N(0, I)) + λ·adv_g + disc
L1 and KL are means over values (of the video and of z_m), so β = 1e-2 (Table 1) weighs one latent
value against one pixel value. LPIPS joins only when `lpips_backbone` names local weights
(vidtool.metrics.lpips; nothing is downloaded). After `gan_start_step` the hinge video GAN
(Discriminator3D, shared with the cm-vae) joins with VQGAN's adaptive λ (vidtool.nn.adversarial).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

from vidtool.errors import UserError
from vidtool.nn.adversarial import adaptive_weight, hinge_losses
from vidtool.nn.cm_vae_blocks import Discriminator3D
from vidtool.nn.lamd_blocks import (
    Downsample3d,
    FusionLayer,
    ResBlock2d,
    ResBlock3d,
    TemporalInterpolation,
    Upsample3d,
    group_norm,
)
from vidtool.nn.params import parameter_count


@dataclass
class MCDVAEConfig:
    frames: int = 16  # L; r_t = L
    image_size: int = 64  # training frame side; content images are resized to it
    motion_channels: int = 3  # d (Table 12: 3)
    content_channels: int = 4  # d' of f_x0
    image_encoder_channels: int = 128  # E_I base width (Table 1)
    motion_encoder_channels: int = 64  # E_M base width (Table 1)
    decoder_channels: int = 128  # D_V base width (Table 1)
    channel_mult: tuple[int, ...] = (1, 2, 4)  # per scale; r_s = 2 ** (len - 1)
    layers_per_block: int = 2  # ResNet blocks per scale in E_I and D_V (E_M is light: one)
    decoder_latent_frames: int = 4  # frames D_V unfolds z_m's channels into; log2(L / this) interpolation blocks
    norm_num_groups: int = 32
    factorized_3d: bool = False  # (2+1)D blocks in E_M and D_V instead of 3x3x3 convs (CPU speed)
    first_frame_residual: bool = False
    beta: float = 1e-2  # KL weight (Table 1)
    kl_warmup_steps: int = 0  # β ramps up linearly over these steps (0: from the start, as in the paper)
    logvar_clamp: tuple[float, float] = (-30.0, 20.0)
    lpips_backbone: str | None = None  # torchvision alexnet/vgg16 state dict, for the perceptual term
    lpips_heads: str | None = None  # LPIPS v0.1 heads (default: an installed lpips package's)
    lpips_weight: float = 1.0
    mse_weight: float = 0.0  # an extra squared-error term (not in Eq. 2); on in `tiny`, see the docstring
    gan_weight: float = 0.5
    adaptive_gan_weight: bool = True
    gan_start_step: int = 50_000
    disc_channels: int = 64
    disc_layers: int = 3

    def __post_init__(self):
        if self.frames < 2 or self.frames & (self.frames - 1):
            raise ValueError(f"frames (L) must be a power of two of at least 2, got {self.frames}; try 8 or 16")
        if self.image_size % self.spatial_factor:
            raise ValueError(f"image_size {self.image_size} must be a multiple of r_s = {self.spatial_factor}")
        if not 1 <= self.decoder_latent_frames <= self.frames or self.frames % self.decoder_latent_frames:
            raise ValueError(f"decoder_latent_frames must divide L = {self.frames} (a power of two up to L), "
                             f"got {self.decoder_latent_frames}")
        if self.beta < 0:
            raise ValueError(f"beta must be non-negative, got {self.beta}")

    @property
    def spatial_factor(self) -> int:
        return 2 ** (len(self.channel_mult) - 1)


PAPER = {
    # Table 1: resolution L x H, E_M width, beta. z_m is 16x16x3 at 64 px and 32x32x3 otherwise; MUG's
    # 32x32 latent at 256 px needs r_s = 8 (one more scale), although the table's r_s row says 4.
    "bair": dict(frames=16, image_size=64, motion_encoder_channels=64, beta=1e-2),
    "landscape": dict(frames=32, image_size=128, motion_encoder_channels=64, beta=1e-2),
    "natops": dict(frames=32, image_size=128, motion_encoder_channels=32, beta=1e-2),
    "mug": dict(frames=16, image_size=256, motion_encoder_channels=64, beta=1e-1, channel_mult=(1, 2, 4, 4)),
    "cater": dict(frames=16, image_size=128, motion_encoder_channels=64, beta=1e-2),
}


def preset(name: str, **overrides) -> MCDVAEConfig:
    """`tiny`: CPU training on 8-frame 64x64 `shapes` clips; z_m 8x8x4 (r_s = 8, r_t = L = 8),
    f_x0 8x8x8; 0.56M (+0.13M discriminator).

    Paper presets, Table 1 (which reports 165M / 175M / 149M / 175M / 165M): `bair`, `landscape`,
    `natops`, `mug`, `cater` count 88.8M / 103.2M / 99.7M / 137.5M / 88.8M here, +8.3M
    discriminator (`count_parameters`). The paper gives widths but not the block layout, so the
    counts fall short; the ordering follows its widths and resolutions."""
    if name == "tiny":
        config = MCDVAEConfig(frames=8, image_size=64, motion_channels=4, content_channels=8,
                              image_encoder_channels=16, motion_encoder_channels=8, decoder_channels=16,
                              channel_mult=(1, 2, 4, 4), layers_per_block=1, norm_num_groups=8,
                              factorized_3d=True, first_frame_residual=True, kl_warmup_steps=400, mse_weight=1.0,
                              gan_start_step=100_000, disc_channels=16, disc_layers=2)
    elif name in PAPER:
        config = MCDVAEConfig(**PAPER[name])
    else:
        raise ValueError(f"unknown mcd-vae preset {name!r}; known: tiny, {', '.join(PAPER)}")
    return replace(config, **overrides)


@dataclass
class ContentFeatures:
    latent: torch.Tensor  # f_x0 [B, d', h, w]
    scales: list[torch.Tensor]  # f^1..f^k, finest first: [B, C_i, H / 2^i, W / 2^i]
    image: torch.Tensor  # x_0 [B, 3, H, W] in [-1, 1]


@dataclass
class MotionEncoding:
    latents: torch.Tensor  # z_m [B, d, h, w] (μ unless sampled)
    mean: torch.Tensor
    logvar: torch.Tensor


class ImageEncoder(nn.Module):
    """E_I: per scale `layers` 2D ResNet blocks whose output is that scale's content feature, then
    a stride-2 conv; at the coarsest scale the content latent f_x0 comes out of a 1x1 head."""

    def __init__(self, widths: list[int], layers: int, groups: int, content_channels: int):
        super().__init__()
        self.conv_in = nn.Conv2d(3, widths[0], 3, padding=1)
        self.levels, self.downs = nn.ModuleList(), nn.ModuleList()
        c = widths[0]
        for i, w in enumerate(widths):
            self.levels.append(nn.Sequential(*[ResBlock2d(c if j == 0 else w, w, groups) for j in range(layers)]))
            c = w
            if i < len(widths) - 1:
                self.downs.append(nn.Conv2d(w, w, 3, stride=2, padding=1))
        self.norm_out = group_norm(c, groups)
        self.conv_out = nn.Conv2d(c, content_channels, 1)

    def forward(self, image: torch.Tensor) -> ContentFeatures:
        h = self.conv_in(image)
        scales = []
        for i, level in enumerate(self.levels):
            h = level(h)
            scales.append(h)
            if i < len(self.downs):
                h = self.downs[i](h)
        return ContentFeatures(latent=self.conv_out(F.silu(self.norm_out(h))), scales=scales, image=image)


class MotionEncoder(nn.Module):
    """E_M: one (2+1)D ResNet block per scale, strided convs between scales (x2 in time while more
    than one frame is left), the remaining frames folded into channels (r_t = L), a normalisation
    layer, then μ and log σ² of z_m."""

    def __init__(self, widths: list[int], frames: int, groups: int, motion_channels: int, factorized: bool):
        super().__init__()
        self.conv_in = nn.Conv3d(3, widths[0], 3, padding=1)
        self.levels, self.downs = nn.ModuleList(), nn.ModuleList()
        c, t = widths[0], frames
        for i, w in enumerate(widths):
            self.levels.append(ResBlock3d(c, w, groups, factorized))
            c = w
            if i < len(widths) - 1:
                self.downs.append(Downsample3d(w, temporal=t > 1))
                t = max(t // 2, 1)
        self.frames_left = t
        self.fold = nn.Conv2d(c * t, c, 1)
        self.norm = group_norm(c, groups)
        self.moments = nn.Conv2d(c, 2 * motion_channels, 1)
        # The bottleneck starts open (σ ≈ 0.05): with σ = 1 from the start the decoder learns to ignore
        # z_m before it finds the motion in it; the β-weighted KL then widens σ as far as reconstruction allows.
        nn.init.constant_(self.moments.bias[motion_channels:], -6.0)

    def forward(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.conv_in(video)
        for i, level in enumerate(self.levels):
            h = level(h)
            if i < len(self.downs):
                h = self.downs[i](h)
        h = self.fold(rearrange(h, "b c t h w -> b (c t) h w"))  # the time axis goes into channels
        mean, logvar = self.moments(F.silu(self.norm(h))).chunk(2, dim=1)
        mean = F.group_norm(mean, 1, eps=1e-5)  # per clip: zero mean, unit variance over (d, h, w)
        return mean, logvar


class FusionDecoder(nn.Module):
    """D_V (Fig. 3): z_m -> `latent_frames` coarse frames (channels unfolded into time), temporal
    interpolation blocks at the coarsest scale until L frames, then fusion + ResNet blocks per scale
    and x2 spatial upsampling."""

    def __init__(self, widths: list[int], content_widths: list[int], layers: int, groups: int,
                 motion_channels: int, frames: int, latent_frames: int, factorized: bool):
        super().__init__()
        coarse = widths[-1]
        self.latent_frames = latent_frames
        self.conv_in = nn.Conv2d(motion_channels, coarse * latent_frames, 3, padding=1)
        doublings = (frames // latent_frames).bit_length() - 1
        self.temporal = nn.ModuleList(TemporalInterpolation(coarse, groups, factorized) for _ in range(doublings))
        # Per scale, `layers` fusion layers and ResNet blocks that the forward interleaves one by one.
        # The per-scale lists sit in a Sequential (indexed, never called as one), not a ModuleList, so
        # that the trainer's checkpointing and FSDP units (vidtool.train.parallel.blocks, the items of
        # the outermost ModuleLists) are those layers, not per-scale lists whose forward never runs.
        self.fusions, self.blocks, self.ups = nn.Sequential(), nn.Sequential(), nn.ModuleList()
        c = coarse
        for i in reversed(range(len(widths))):
            w = widths[i]
            self.fusions.append(nn.ModuleList(FusionLayer(c if j == 0 else w, content_widths[i]) for j in range(layers)))
            self.blocks.append(nn.ModuleList(ResBlock3d(c if j == 0 else w, w, groups, factorized) for j in range(layers)))
            c = w
            if i > 0:
                self.ups.append(Upsample3d(w))
        self.norm_out = group_norm(c, groups)
        self.conv_out = nn.Conv3d(c, 3, (1, 3, 3), padding=(0, 1, 1))

    def forward(self, z_m: torch.Tensor, scales: list[torch.Tensor]) -> torch.Tensor:
        h = rearrange(self.conv_in(z_m), "b (c t) h w -> b c t h w", t=self.latent_frames)
        for step in self.temporal:
            h = step(h)
        for n, (fusions, blocks) in enumerate(zip(self.fusions, self.blocks)):
            content = scales[len(scales) - 1 - n]
            for fuse, block in zip(fusions, blocks):
                h = block(fuse(h, content))
            if n < len(self.ups):
                h = self.ups[n](h)
        return self.conv_out(F.silu(self.norm_out(h)))


class MCDVAE(nn.Module):
    family = "mcd-vae"
    config_class = MCDVAEConfig

    def __init__(self, config: MCDVAEConfig):
        super().__init__()
        self.config = config
        mult, groups = config.channel_mult, config.norm_num_groups
        image_widths = [config.image_encoder_channels * m for m in mult]
        self.image_encoder = ImageEncoder(image_widths, config.layers_per_block, groups, config.content_channels)
        self.motion_encoder = MotionEncoder([config.motion_encoder_channels * m for m in mult], config.frames, groups,
                                            config.motion_channels, config.factorized_3d)
        self.decoder = FusionDecoder([config.decoder_channels * m for m in mult], image_widths, config.layers_per_block,
                                     groups, config.motion_channels, config.frames, config.decoder_latent_frames,
                                     config.factorized_3d)
        self.discriminator = Discriminator3D(config.disc_channels, config.disc_layers)
        self._lpips: list[nn.Module] = []  # loaded on first use; a list keeps it out of the state dict

    # --- geometry -------------------------------------------------------------------------------

    @property
    def frames(self) -> int:
        return self.config.frames

    @property
    def temporal_factor(self) -> int:
        return self.config.frames  # r_t = L: the whole clip becomes one latent "frame" in the channels

    @property
    def spatial_factor(self) -> int:
        return self.config.spatial_factor

    @property
    def latent_channels(self) -> int:
        return self.config.motion_channels

    def parameter_counts(self) -> dict[str, int]:
        return {
            "image_encoder": parameter_count(self.image_encoder),
            "motion_encoder": parameter_count(self.motion_encoder),
            "decoder": parameter_count(self.decoder),
            "autoencoder": parameter_count(self.image_encoder, self.motion_encoder, self.decoder),
            "discriminator": parameter_count(self.discriminator),
        }

    # --- checks ---------------------------------------------------------------------------------

    def _check_video(self, video: torch.Tensor) -> None:
        if video.ndim != 5 or video.shape[1] != 3:
            raise UserError(f"video must be [B, 3, T, H, W], got shape {tuple(video.shape)}")
        t, h, w = video.shape[2:]
        if t != self.frames:
            raise UserError(f"clip has {t} frames; this mcd-vae encodes exactly L = {self.frames} (r_t = L): "
                            f"pass --frames {self.frames}")
        self._check_size(h, w)

    def _check_size(self, h: int, w: int) -> None:
        if h % self.spatial_factor or w % self.spatial_factor:
            raise UserError(f"frame size {h}x{w} must be a multiple of r_s = {self.spatial_factor} on both sides")

    # --- the three parts ------------------------------------------------------------------------

    def encode_content(self, image: torch.Tensor) -> ContentFeatures:
        """E_I: first frame [B, 3, H, W] in [-1, 1] -> f_x0 and the multi-scale features."""
        if image.ndim != 4 or image.shape[1] != 3:
            raise UserError(f"content image must be [B, 3, H, W], got shape {tuple(image.shape)}")
        self._check_size(*image.shape[2:])
        return self.image_encoder(image)

    def encode(self, video: torch.Tensor, *, sample: bool = False) -> MotionEncoding:
        """E_M and the bottleneck (Eq. 1): video [B, 3, L, H, W] -> z_m [B, d, H/r_s, W/r_s]."""
        self._check_video(video)
        mean, logvar = self.motion_encoder(video)
        logvar = logvar.clamp(*self.config.logvar_clamp)
        latents = mean + torch.randn_like(mean) * (0.5 * logvar).exp() if sample else mean
        return MotionEncoding(latents=latents, mean=mean, logvar=logvar)

    def _decode(self, z_m: torch.Tensor, content: ContentFeatures) -> torch.Tensor:
        out = self.decoder(z_m, content.scales)
        if self.config.first_frame_residual:
            out = out + repeat(content.image, "b c h w -> b c t h w", t=out.shape[2])
        return out

    def decode(self, z_m: torch.Tensor, content: torch.Tensor | ContentFeatures) -> torch.Tensor:
        """D_V: motion latent [B, d, h, w] + content (an image [B, 3, H, W] or its features) ->
        video [B, 3, L, H, W] in [-1, 1]. Motion and content may come from different clips (§4.2.2)."""
        if z_m.ndim != 4 or z_m.shape[1] != self.latent_channels:
            raise UserError(f"motion latent must be [B, {self.latent_channels}, h, w], got {tuple(z_m.shape)}")
        if not isinstance(content, ContentFeatures):
            content = self.encode_content(content)
        expected = (content.image.shape[2] // self.spatial_factor, content.image.shape[3] // self.spatial_factor)
        if tuple(z_m.shape[2:]) != expected or z_m.shape[0] != content.image.shape[0]:
            raise UserError(f"motion latent {tuple(z_m.shape)} does not fit a content batch of "
                            f"{tuple(content.image.shape)}: need [B, {self.latent_channels}, {expected[0]}, {expected[1]}]")
        return self._decode(z_m, content).clamp(-1, 1)

    def forward(self, video: torch.Tensor, *, sample: bool = False) -> torch.Tensor:
        """Reconstruction (not clamped, as the loss sees it)."""
        encoded = self.encode(video, sample=sample)
        return self._decode(encoded.latents, self.encode_content(video[:, :, 0]))

    # --- losses (Eq. 2) -------------------------------------------------------------------------

    def _perceptual(self, video: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
        if not self._lpips:
            from vidtool.metrics.lpips import load_lpips

            model, _ = load_lpips(self.config.lpips_backbone, self.config.lpips_heads, device=str(video.device))
            self._lpips.append(model.requires_grad_(False))
        frames = lambda v: rearrange(v, "b c t h w -> (b t) c h w")  # noqa: E731
        return self._lpips[0](frames(video), frames(recon)).mean()

    def training_losses(self, batch: dict, *, step: int, total_steps: int) -> dict[str, torch.Tensor]:
        """Eq. 2 on a batch of L-frame clips. "loss" is optimised; the other entries are detached:
        rec (L1), mse, lpips, kl, adv_g, disc, gan_lambda."""
        video = batch["video"]
        encoded = self.encode(video, sample=self.training)
        recon = self._decode(encoded.latents, self.encode_content(video[:, :, 0]))

        zero = video.new_zeros(())
        rec = F.l1_loss(recon, video)
        lpips = self._perceptual(video, recon) if self.config.lpips_backbone else zero
        mean, logvar = encoded.mean, encoded.logvar
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean()
        warmup = self.config.kl_warmup_steps
        beta = self.config.beta * (min(1.0, step / warmup) if warmup else 1.0)
        mse = F.mse_loss(recon, video) if self.config.mse_weight else zero
        generator_rec = rec + self.config.lpips_weight * lpips + self.config.mse_weight * mse
        adv_g, disc, gan_lambda = zero, zero, zero
        if step >= self.config.gan_start_step:
            adv_g, disc = hinge_losses(self.discriminator, video, recon)
            gan_lambda = adaptive_weight(generator_rec, adv_g, self.decoder.conv_out.weight, self.config.gan_weight,
                                         self.config.adaptive_gan_weight)
        loss = generator_rec + beta * kl + gan_lambda * adv_g + disc
        terms = {"rec": rec, "mse": mse, "lpips": lpips, "kl": kl, "adv_g": adv_g, "disc": disc, "gan_lambda": gan_lambda}
        return {"loss": loss, **{name: value.detach() for name, value in terms.items()}}


def count_parameters(config: MCDVAEConfig) -> dict[str, int]:
    """Parameter counts of a config without allocating it (built on the meta device)."""
    with torch.device("meta"):
        return MCDVAE(config).parameter_counts()


__all__ = ["ContentFeatures", "MCDVAE", "MCDVAEConfig", "MotionEncoding", "count_parameters", "preset"]
