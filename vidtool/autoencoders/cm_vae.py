"""Cross-modal Video VAE ("Large Motion Video Autoencoding with Cross-modal Video VAE", §3).

    video X [B, 3, T, H, W] in [-1, 1]
      -> E1, temporal-aware spatial encoder: the 2D VAE's encoder with every conv inflated to
         (1, 3, 3) and each ResNet conv followed by a temporal conv (STBlock3D), x8 spatial, no
         temporal compression; a temporal attention in the mid block           (§3.2, Fig. 3)
      -> Z1 [B, c, T, H/8, W/8], deterministic: the mean half of the 2D VAE's moments (Eq. 2)
      -> E2, temporal encoder: one conv + (strided conv, 3D ResNet block) per x2 of time (Eq. 3)
      -> Z2 [B, c, T/4, H/8, W/8] ~ N(mean, exp(logvar)): the only KL-regularised latent (§3.5)
      -> D2 (upsample + two 3D ResNet blocks per level, asymmetric) -> Z1^ -> D1 -> X^ (Eq. 4)

Text (§3.3): with `text_dim` set, a cross-attention on p x p patches follows every ResNet block of
E1/D1 (p = 8, 4, 2, 1 from the finest level down) and of E2/D2 (p = 1); text embeddings (e.g.
Flan-T5, [B, L, text_dim]) are passed to `encode`/`decode` and in `batch["text"]`. Text is ignored
when the model was built without `text_dim`, and skipped when none is given.

Images (§3.4): an image batch is T == 1. It runs E1/D1 with the temporal convs and temporal
attention skipped and bypasses E2/D2: its latent is Z1 [B, c, 1, H/8, W/8] and it has no KL. A clip
of 4 frames also has a one-frame latent, so `decode` reads t == 1 as an image unless `image=False`.

Clip length: T == 1 (image) or a multiple of `temporal_factor` (4); no causal first frame (§3.4).

Loss (§3.5 Eq. 5), `training_losses`:
    loss = L1(X, X^) + kl_weight * KL(Z2) + lambda_GAN * adv_g + disc
`KL(Z2)` is summed over the latent and divided by the number of input values (3·T·H·W), the same
per-value scale as the L1 term, so `kl_weight` means what it means in LDM / SD's VAE (1e-6); the
paper gives no value. The perceptual (LPIPS) part of L_recon is not included: it needs pretrained
weights this model does not load. After `gan_start_step` (paper: 50K) the hinge 3D GAN joins:
`adv_g` runs the discriminator with detached parameters (it trains only the generator) and `disc`
sees detached reconstructions (it trains only the discriminator), so the trainer's one optimizer
and one backward give each part its own objective. lambda_GAN is VQGAN's adaptive weight
(||grad rec|| / ||grad adv_g|| at the decoder's last layer) times `gan_weight`, or `gan_weight`
alone with `adaptive_gan_weight=False` (and always when gradients are off).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from vidtool.autoencoders.outputs import EncoderOutput
from vidtool.errors import UserError
from vidtool.nn.cm_vae_blocks import (
    Discriminator3D,
    SpatialDecoder,
    SpatialEncoder,
    TemporalAttention,
    TemporalConv,
    TemporalDecoder,
    TemporalEncoder,
    spatial_conv,
)
from vidtool.nn.params import parameter_count


@dataclass
class CMVAEConfig:
    # Temporal-aware spatial AE: the 2D VAE it inflates (SD's VAE: (128, 256, 512, 512), 2, 32).
    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    layers_per_block: int = 2
    norm_num_groups: int = 32
    latent_channels: int = 4  # c of Z1 and of Z2 (the 2D VAE's latent width: 4 for SD-1.4, 16 for SD-3.5)
    use_quant_conv: bool = True  # SD-1.x has quant/post-quant 1x1 convs; SD-3.5's VAE has none
    # Not in the paper: a linear space-to-channel path around the spatial AE (residual autoencoding,
    # as DC-AE's shortcuts, arXiv 2410.10733 §3.2): Z1 += W_in·unshuffle(X), X^ += shuffle(W_out·Z1).
    # It starts the AE at a learned linear code (a PCA-like basis of f x f patches) so a small model
    # trained briefly on a CPU already reconstructs natural footage; SD's VAE has no such path.
    linear_shortcut: bool = False
    temporal_kernel: tuple[int, int, int] = (7, 3, 3)  # STBlock3D temporal conv, best in Table 4
    # Temporal AE: conv_in width, then the width after each x2 temporal downsampling (x4: 2 levels).
    use_temporal_ae: bool = True
    temporal_block_out_channels: tuple[int, ...] = (128, 256, 512)
    # Cross-modal attention (§3.3); None builds no text layers.
    text_dim: int | None = None
    text_patch_sizes: tuple[int, ...] = (8, 4, 2, 1)  # per spatial level, finest first
    text_heads: int = 8
    text_head_dim: int = 64
    # Losses (§3.5).
    kl_weight: float = 1e-6
    gan_weight: float = 0.5
    adaptive_gan_weight: bool = True
    gan_start_step: int = 50_000  # §4.1: "video GAN loss after 50K warmup steps"
    disc_channels: int = 64
    disc_layers: int = 3

    def __post_init__(self):
        if len(self.text_patch_sizes) != len(self.block_out_channels):
            raise ValueError(f"text_patch_sizes needs one entry per spatial level ({len(self.block_out_channels)}), "
                             f"got {self.text_patch_sizes}")
        widths = self.block_out_channels + self.temporal_block_out_channels
        if any(w % self.norm_num_groups for w in widths):
            raise ValueError(f"every width must be a multiple of norm_num_groups={self.norm_num_groups}; got {widths}")
        if self.use_temporal_ae and len(self.temporal_block_out_channels) < 2:
            raise ValueError("temporal_block_out_channels needs conv_in width + one width per x2 level, e.g. (128, 256, 512)")
        if any(k % 2 == 0 for k in self.temporal_kernel):
            raise ValueError(f"temporal_kernel sizes must be odd (same padding), got {self.temporal_kernel}; try (7, 3, 3)")


def preset(name: str, **overrides) -> CMVAEConfig:
    """`tiny`: CPU training on 64x64x16 clips, 4 latent channels; 2.07M spatial AE + 0.56M temporal
    AE (+0.13M discriminator). `tiny-footage`: the bundled `encode` default (see its branch).

    `4ch` / `16ch`: the paper's models, spatial AE shaped as SD-1.4's / SD-3.5's VAE (inflate them
    with `CMVAE.from_2d_vae`). Spatial AE 600M = the 2D VAE's 83.7M + 514M of (7, 3, 3) temporal
    convs + 2.1M temporal attention; temporal AE 35.6M (4ch) / 36.2M (16ch); discriminator 8.3M.
    The paper reports no counts. Pass `text_dim=` (1024 for Flan-T5-large, 2048 for -XL) for the
    cross-modal variants: +97M (spatial) and +7.9M (temporal) at 1024."""
    if name == "tiny":
        config = CMVAEConfig(
            block_out_channels=(16, 32, 48, 48),
            layers_per_block=1,
            norm_num_groups=8,
            temporal_kernel=(3, 3, 3),  # (7, 3, 3) makes a CPU step ~1.7x slower
            temporal_block_out_channels=(32, 32, 48),
            text_heads=4,
            text_head_dim=16,
            gan_start_step=2_000,
            disc_channels=16,
            disc_layers=2,
        )
    elif name == "tiny-footage":
        # The bundled default of `encode` (cm-vae-tiny): x4 spatial, 8 channels, no temporal
        # compression (a 6x smaller latent than the frames), the linear shortcut, (3, 1, 1) temporal
        # convs; sized so a 2-core CPU codes 176x144 footage at several frames a second.
        config = replace(preset("tiny"), block_out_channels=(16, 32, 32), text_patch_sizes=(4, 2, 1),
                         latent_channels=8, linear_shortcut=True, temporal_kernel=(3, 1, 1),
                         use_temporal_ae=False, gan_start_step=1_000_000)
    elif name == "4ch":
        config = CMVAEConfig()
    elif name == "16ch":
        config = CMVAEConfig(latent_channels=16, use_quant_conv=False)
    else:
        raise ValueError(f"unknown cm-vae preset {name!r}; known: tiny, tiny-footage, 4ch, 16ch")
    return replace(config, **overrides)


class CMVAE(nn.Module):
    family = "cm-vae"
    config_class = CMVAEConfig
    joint_image_training = True  # §3.4: image batches (T == 1) run the spatial AE alone

    def __init__(self, config: CMVAEConfig):
        super().__init__()
        self.config = config
        c = config.latent_channels
        spatial = dict(block_out_channels=config.block_out_channels, layers_per_block=config.layers_per_block,
                       groups=config.norm_num_groups, latent_channels=c, temporal_kernel=config.temporal_kernel,
                       text_dim=config.text_dim, text_patch_sizes=config.text_patch_sizes,
                       text_heads=config.text_heads, text_head_dim=config.text_head_dim)
        self.encoder = SpatialEncoder(**spatial)
        # Z1 is the mean half of the 2D VAE's posterior: quant_conv keeps only the rows giving the mean.
        self.quant_conv = spatial_conv(2 * c, c, kernel=1) if config.use_quant_conv else None
        self.post_quant_conv = spatial_conv(c, c, kernel=1) if config.use_quant_conv else None
        self.decoder = SpatialDecoder(**spatial)
        if config.use_temporal_ae:
            temporal = dict(latent_channels=c, widths=config.temporal_block_out_channels,
                            groups=config.norm_num_groups, text_dim=config.text_dim,
                            text_heads=config.text_heads, text_head_dim=config.text_head_dim)
            self.temporal_encoder = TemporalEncoder(**temporal)
            self.temporal_decoder = TemporalDecoder(**temporal)
        if config.linear_shortcut:
            f = self.spatial_factor
            self.shortcut_in = nn.Conv2d(3 * f * f, c, 1)
            self.shortcut_out = nn.Conv2d(c, 3 * f * f, 1)
            basis = patch_basis(f, c)
            with torch.no_grad():
                self.shortcut_in.weight.copy_(basis[:, :, None, None])
                self.shortcut_out.weight.copy_(basis.T[:, :, None, None])
                self.shortcut_in.bias.zero_()
                self.shortcut_out.bias.zero_()
        self.discriminator = Discriminator3D(config.disc_channels, config.disc_layers)

    @property
    def temporal_factor(self) -> int:
        return 2 ** (len(self.config.temporal_block_out_channels) - 1) if self.config.use_temporal_ae else 1

    @property
    def spatial_factor(self) -> int:
        return 2 ** (len(self.config.block_out_channels) - 1)

    @property
    def latent_channels(self) -> int:
        return self.config.latent_channels

    @property
    def encodes_frames_alone(self) -> bool:
        """Nothing mixes frames: no temporal AE, and every temporal conv and temporal attention still
        outputs zero (zero-initialised, never trained on video, as cm-vae-tiny). Then chunked coding
        needs no context frames (vidtool.autoencoders.tiling) and inference skips those layers."""
        if self.config.use_temporal_ae:
            return False
        outputs = [m.conv for m in self.modules() if isinstance(m, TemporalConv)]
        outputs += [m.to_out for m in self.modules() if isinstance(m, TemporalAttention)]
        tensors = [t for m in outputs for t in (m.weight, m.bias) if t is not None]
        return all(not t.is_meta and not torch.count_nonzero(t) for t in tensors)

    @property
    def decodes_frames_alone(self) -> bool:
        return self.encodes_frames_alone

    def _temporal(self, frames: int) -> bool:
        """Whether the temporal layers run on `frames` frames: not for images, and not at inference
        when they are the identity (the same output, without their cost)."""
        return frames > 1 and (torch.is_grad_enabled() or not self.encodes_frames_alone)

    def parameter_counts(self) -> dict[str, int]:
        temporal = (self.temporal_encoder, self.temporal_decoder) if self.config.use_temporal_ae else ()
        return {
            "spatial_ae": parameter_count(self.encoder, self.quant_conv, self.post_quant_conv, self.decoder),
            "temporal_ae": parameter_count(*temporal),
            "discriminator": parameter_count(self.discriminator),
        }

    # --- checks -------------------------------------------------------------------------------

    def _check_video(self, video: torch.Tensor) -> None:
        if video.ndim != 5 or video.shape[1] != 3:
            raise UserError(f"video must be [B, 3, T, H, W], got shape {tuple(video.shape)}")
        t, h, w = video.shape[2:]
        if t != 1 and t % self.temporal_factor:
            raise UserError(f"clip has {t} frames; the cm-vae takes 1 (an image) or a multiple of "
                            f"{self.temporal_factor} (trim to {t - t % self.temporal_factor} frames)")
        if h % self.spatial_factor or w % self.spatial_factor:
            raise UserError(f"frame size {h}x{w} must be a multiple of {self.spatial_factor} on both sides; resize or crop")

    def _text(self, text: torch.Tensor | None, text_mask: torch.Tensor | None, batch: int):
        if text is None or self.config.text_dim is None:
            return None, None
        if text.ndim != 3 or text.shape[0] != batch or text.shape[2] != self.config.text_dim:
            raise UserError(f"text embeddings must be [B={batch}, L, {self.config.text_dim}], got {tuple(text.shape)}; "
                            "use the text encoder this cm-vae was trained with")
        if text_mask is not None and not text_mask.bool().any(dim=1).all():
            raise UserError("text_mask hides every token of some sample; pass at least one token or no text")
        return text, text_mask

    # --- the two stages -----------------------------------------------------------------------

    def encode_spatial(self, video, text=None, text_mask=None) -> torch.Tensor:
        """E1: video [B, 3, T, H, W] -> Z1 [B, c, T, H/8, W/8]; temporal layers only when T > 1."""
        moments = self.encoder(video, self._temporal(video.shape[2]), text, text_mask)
        z1 = self.quant_conv(moments) if self.quant_conv is not None else moments[:, : self.latent_channels]
        if self.config.linear_shortcut:
            z1 = z1 + self._per_frame(video, lambda x: self.shortcut_in(F.pixel_unshuffle(x, self.spatial_factor)))
        return z1

    def decode_spatial(self, z1, text=None, text_mask=None) -> torch.Tensor:
        """D1: Z1 [B, c, T, h, w] -> video [B, 3, T, 8h, 8w] (not clamped)."""
        shortcut = None
        if self.config.linear_shortcut:
            shortcut = self._per_frame(z1, lambda z: F.pixel_shuffle(self.shortcut_out(z), self.spatial_factor))
        if self.post_quant_conv is not None:
            z1 = self.post_quant_conv(z1)
        video = self.decoder(z1, self._temporal(z1.shape[2]), text, text_mask)
        return video if shortcut is None else video + shortcut

    @staticmethod
    def _per_frame(x: torch.Tensor, fn) -> torch.Tensor:
        frames = fn(rearrange(x, "b c t h w -> (b t) c h w"))
        return rearrange(frames, "(b t) c h w -> b c t h w", b=x.shape[0])

    def _encode(self, video, text, text_mask, sample: bool) -> EncoderOutput:
        self._check_video(video)
        z1 = self.encode_spatial(video, text, text_mask)
        if video.shape[2] == 1 or not self.config.use_temporal_ae:
            return EncoderOutput(latents=z1)
        mean, logvar = self.temporal_encoder(z1, text, text_mask).chunk(2, dim=1)
        logvar = logvar.clamp(-30.0, 20.0)  # as diffusers' DiagonalGaussianDistribution
        latents = mean + torch.randn_like(mean) * (0.5 * logvar).exp() if sample else mean
        return EncoderOutput(latents=latents, mean=mean, logvar=logvar)

    def _decode(self, latents, text, text_mask, image: bool) -> torch.Tensor:
        z1 = latents if image or not self.config.use_temporal_ae else self.temporal_decoder(latents, text, text_mask)
        return self.decode_spatial(z1, text, text_mask)

    # --- public interface (vidtool.autoencoders) ----------------------------------------------

    def encode(self, video: torch.Tensor, text: torch.Tensor | None = None, *, text_mask: torch.Tensor | None = None,
               sample: bool = False) -> EncoderOutput:
        """Video -> Z2 [B, c, T/4, H/8, W/8] (mean unless `sample`), with mean and logvar; an image
        (T == 1) -> Z1 [B, c, 1, H/8, W/8] with no mean/logvar (deterministic)."""
        text, text_mask = self._text(text, text_mask, video.shape[0])
        return self._encode(video, text, text_mask, sample)

    def decode(self, latents: torch.Tensor, text: torch.Tensor | None = None, *,
               text_mask: torch.Tensor | None = None, image: bool | None = None) -> torch.Tensor:
        """Latents [B, c, t, h, w] -> video [B, 3, 4t, 8h, 8w] in [-1, 1]; with t == 1 the latent is
        taken as an image's Z1 (-> one frame) unless `image=False` (a 4-frame clip's Z2)."""
        if latents.ndim != 5 or latents.shape[1] != self.latent_channels:
            raise UserError(f"latents must be [B, {self.latent_channels}, t, h, w], got {tuple(latents.shape)}")
        text, text_mask = self._text(text, text_mask, latents.shape[0])
        image = latents.shape[2] == 1 if image is None else image
        return self._decode(latents, text, text_mask, image).clamp(-1, 1)

    def forward(self, video, text=None, *, text_mask=None, sample: bool = False) -> torch.Tensor:
        """Reconstruction of `video` (not clamped, as the loss sees it)."""
        text, text_mask = self._text(text, text_mask, video.shape[0])
        encoded = self._encode(video, text, text_mask, sample)
        return self._decode(encoded.latents, text, text_mask, video.shape[2] == 1)

    # --- losses (§3.5) ------------------------------------------------------------------------

    def gan_losses(self, video: torch.Tensor, reconstruction: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(adv_g, disc): the generator's hinge term through a parameter-detached discriminator, and
        the discriminator's hinge loss on real clips and detached reconstructions."""
        frozen = {name: p.detach() for name, p in self.discriminator.named_parameters()}
        adv_g = -torch.func.functional_call(self.discriminator, frozen, (reconstruction,)).mean()
        real, fake = self.discriminator(video), self.discriminator(reconstruction.detach())
        disc = 0.5 * (F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean())
        return adv_g, disc

    def _gan_lambda(self, rec: torch.Tensor, adv_g: torch.Tensor) -> torch.Tensor:
        """VQGAN's adaptive weight: balance the two gradients at the decoder's last layer."""
        last = self.decoder.conv_out.weight
        if not (self.config.adaptive_gan_weight and torch.is_grad_enabled() and last.requires_grad):
            return torch.tensor(self.config.gan_weight, device=rec.device)
        g_rec, = torch.autograd.grad(rec, last, retain_graph=True)
        g_adv, = torch.autograd.grad(adv_g, last, retain_graph=True)
        return (g_rec.norm() / (g_adv.norm() + 1e-4)).clamp(0.0, 1e4).detach() * self.config.gan_weight

    def training_losses(self, batch: dict, *, step: int, total_steps: int) -> dict[str, torch.Tensor]:
        """Eq. 5 on one batch of clips (T > 1) or images (T == 1). "loss" is optimised; the other
        entries are detached: rec, kl, adv_g, disc and gan_lambda."""
        video = batch["video"]
        text, text_mask = self._text(batch.get("text"), batch.get("text_mask"), video.shape[0])
        encoded = self._encode(video, text, text_mask, sample=self.training)
        recon = self._decode(encoded.latents, text, text_mask, video.shape[2] == 1)

        zero = video.new_zeros(())
        rec = F.l1_loss(recon, video)
        kl = zero
        if encoded.mean is not None:  # Z2 only: images and Z1 carry no KL (§3.5)
            mean, logvar = encoded.mean, encoded.logvar
            kl_sum = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).flatten(1).sum(1)
            kl = kl_sum.mean() / video[0].numel()
        adv_g, disc, gan_lambda = zero, zero, zero
        if step >= self.config.gan_start_step:
            adv_g, disc = self.gan_losses(video, recon)
            gan_lambda = self._gan_lambda(rec, adv_g)
        loss = rec + self.config.kl_weight * kl + gan_lambda * adv_g + disc
        terms = {"rec": rec, "kl": kl, "adv_g": adv_g, "disc": disc, "gan_lambda": gan_lambda}
        return {"loss": loss, **{name: value.detach() for name, value in terms.items()}}

    # --- initialisation from a 2D VAE (§3.2, §4.1) --------------------------------------------

    @classmethod
    def from_2d_vae(cls, folder: str | Path, config: CMVAEConfig | None = None) -> "CMVAE":
        """A cm-vae whose spatial AE is the diffusers `AutoencoderKL` in the local `folder`, inflated.

        Without `config`, the 2D VAE's shape fills the spatial fields of the default config. The
        temporal parts start as the identity (zero-initialised residual temporal convs and temporal
        attention), so E1/D1 compute exactly the 2D VAE on each frame."""
        from diffusers import AutoencoderKL

        folder = Path(folder)
        if not (folder / "config.json").is_file():
            raise UserError(f"{folder} is not a diffusers AutoencoderKL folder (no config.json); pass e.g. the 'vae' "
                            "subfolder of a local Stable Diffusion checkout")
        vae = AutoencoderKL.from_pretrained(folder, local_files_only=True)
        if config is None:
            vc = vae.config
            config = CMVAEConfig(block_out_channels=tuple(vc.block_out_channels), layers_per_block=vc.layers_per_block,
                                 norm_num_groups=vc.norm_num_groups, latent_channels=vc.latent_channels,
                                 use_quant_conv=vc.use_quant_conv,
                                 text_patch_sizes=tuple(2 ** max(3 - i, 0) for i in range(len(vc.block_out_channels))))
        model = cls(config)
        inflate_from_autoencoder_kl(model, vae)
        return model


def patch_basis(f: int, count: int) -> torch.Tensor:
    """`count` orthonormal vectors over the 3·f·f values of an f x f RGB patch in pixel_unshuffle's
    order (channel-major): JPEG's decomposition, an orthonormal opponent-colour transform (luma
    first) times the 2D DCT-II, taken in order of spatial frequency, luma before chroma at each.
    Natural images put most of their energy in these, so the shortcut starts near the best linear code."""
    import math

    colours = torch.tensor([[1.0, 1.0, 1.0], [1.0, -1.0, 0.0], [1.0, 1.0, -2.0]])
    colours = colours / colours.norm(dim=1, keepdim=True)
    i = torch.arange(f, dtype=torch.float32)
    dct = torch.stack([torch.cos(math.pi * (i + 0.5) * k / f) for k in range(f)])
    dct = dct / dct.norm(dim=1, keepdim=True)
    # Luma at every frequency comes before chroma at the same one; chroma gets DC and first harmonics.
    order = sorted(((u + v, colour, u, v) for colour in range(3) for u in range(f) for v in range(f)),
                   key=lambda k: (k[0] + (0 if k[1] == 0 else 1.5 * k[0]), k[1], k[2]))
    if count > len(order):
        raise ValueError(f"a {f}x{f} RGB patch has {len(order)} values; latent_channels={count} is more")
    rows = [torch.einsum("c,h,w->chw", colours[colour], dct[u], dct[v]).flatten() for _, colour, u, v in order[:count]]
    return torch.stack(rows)


def inflate_from_autoencoder_kl(model: CMVAE, vae: nn.Module) -> list[str]:
    """Copy every tensor of a diffusers `AutoencoderKL` into `model`'s spatial AE; returns the keys.

    Conv weights [O, I, k, k] become [O, I, 1, k, k]; diffusers' `to_out.0` is our `to_out`; of
    `quant_conv` only the rows producing the posterior mean are kept (Z1 is that mean)."""
    vc, mc = vae.config, model.config
    expected = dict(block_out_channels=tuple(vc.block_out_channels), layers_per_block=vc.layers_per_block,
                    norm_num_groups=vc.norm_num_groups, latent_channels=vc.latent_channels,
                    use_quant_conv=vc.use_quant_conv)
    for name, value in expected.items():
        if getattr(mc, name) != value:
            raise UserError(f"cm-vae config has {name}={getattr(mc, name)!r} but the 2D VAE has {value!r}; "
                            "build the config from the VAE (CMVAE.from_2d_vae(folder) without config)")
    if vc.act_fn != "silu" or not vc.mid_block_add_attention or vc.use_post_quant_conv != vc.use_quant_conv:
        raise UserError("only SD-style AutoencoderKLs inflate: SiLU, mid-block attention, quant and post-quant convs together")

    own = model.state_dict()
    copied = []
    with torch.no_grad():
        for key, value in vae.state_dict().items():
            target = key.replace(".to_out.0.", ".to_out.")
            if key.startswith("quant_conv."):
                value = value[: mc.latent_channels]
            if value.ndim == 4:
                value = value.unsqueeze(2)
            if target not in own or own[target].shape != value.shape:
                raise UserError(f"2D VAE tensor {key} {tuple(value.shape)} has no match in the cm-vae; "
                                "is it a diffusers AutoencoderKL?")
            own[target].copy_(value)
            copied.append(target)
    return copied


def count_parameters(config: CMVAEConfig) -> dict[str, int]:
    """Parameter counts of a config without allocating it (built on the meta device)."""
    with torch.device("meta"):
        return CMVAE(config).parameter_counts()


__all__ = ["CMVAE", "CMVAEConfig", "count_parameters", "inflate_from_autoencoder_kl", "preset"]
