"""A diffusers `AutoencoderKL` (the Stable Diffusion 1.x/2.x/XL image VAE) used as a video autoencoder,
frame by frame: temporal factor 1, spatial factor 2^(levels-1), its own latent channels.

It is read from the folder diffusers writes (`config.json` with `"_class_name": "AutoencoderKL"` and
`diffusion_pytorch_model.safetensors`, or a pipeline root's `vae/`) with no conversion step
(vidtool.checkpoint recognises the folder); its tag `sd-vae@digest` is the digest of that weights
file, so latents made with it decode with it. A generator built on a Stable Diffusion U-Net works in
this latent space, scaled by the VAE's own `scaling_factor` (SD 1.x/2.x: 0.18215), the scale the
U-Net was trained at.

Encoding returns the posterior mean (deterministic, as `vidtool encode` promises); training sets
are encoded the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from einops import rearrange
from torch import nn

from vidtool.autoencoders.outputs import EncoderOutput
from vidtool.errors import UserError


@dataclass
class SDVAEConfig:
    diffusers: dict = field(default_factory=dict)  # the AutoencoderKL's own config.json


def preset(name: str, **overrides) -> SDVAEConfig:
    raise ValueError("sd-vae is a pretrained diffusers AutoencoderKL, not trained here: pass its folder "
                     "(or a Stable Diffusion pipeline root) as --vae / --model")


class SDVAE(nn.Module):
    family = "sd-vae"
    config_class = SDVAEConfig
    diffusers_class = "AutoencoderKL"  # the diffusers class wrapped (vidtool.autoencoders.vq_model: VQModel)

    def __init__(self, config: SDVAEConfig):
        super().__init__()
        import diffusers

        self.config = config
        self.vae = getattr(diffusers, self.diffusers_class).from_config(config.diffusers)

    @classmethod
    def from_diffusers(cls, folder: str | Path) -> SDVAE:
        """Wrap the diffusers autoencoder saved in `folder` (diffusers reads and converts its weights)."""
        import diffusers

        from vidtool.standard_folders import check_all_weights_read, first_line, load_errors, quiet_diffusers

        quiet_diffusers()
        try:
            vae, info = getattr(diffusers, cls.diffusers_class).from_pretrained(
                Path(folder), local_files_only=True, output_loading_info=True)
        except load_errors() as e:
            raise UserError(f"cannot load the diffusers {cls.diffusers_class} in {folder}: {first_line(e)}; is it "
                            "the folder diffusers wrote, with its config.json unchanged?") from e
        check_all_weights_read(folder, info, cls.diffusers_class)
        model = cls.__new__(cls)
        nn.Module.__init__(model)
        model.config = SDVAEConfig(diffusers=diffusers_config(vae.config))
        model.vae = vae
        try:
            model.scaling_factor  # a hand-edited scale would scale every latent by NaN or a string
        except UserError as e:
            raise UserError(f"{Path(folder) / 'config.json'}: {e}") from e
        return model

    @property
    def temporal_factor(self) -> int:
        return 1

    @property
    def spatial_factor(self) -> int:
        return 2 ** (len(self.config.diffusers["block_out_channels"]) - 1)

    @property
    def latent_channels(self) -> int:
        return int(self.config.diffusers["latent_channels"])

    @property
    def scaling_factor(self) -> float:
        """What the pretrained diffusion models multiply these latents by (SD 1.x/2.x: 0.18215)."""
        import math

        value = self.config.diffusers.get("scaling_factor", 0.18215)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise UserError(f"the {self.diffusers_class} config's scaling_factor is {value!r}, not a positive number; "
                            "restore the value diffusers wrote (SD 1.x/2.x: 0.18215, SDXL: 0.13025)")
        return float(value)

    def encode(self, video: torch.Tensor) -> EncoderOutput:
        """[B, 3, T, H, W] in [-1, 1] -> posterior mean [B, C, T, h, w]."""
        b = video.shape[0]
        if video.shape[-1] % self.spatial_factor or video.shape[-2] % self.spatial_factor:
            raise UserError(f"frame size {tuple(video.shape[-2:])} must be a multiple of {self.spatial_factor}")
        posterior = self.vae.encode(rearrange(video, "b c t h w -> (b t) c h w")).latent_dist
        latents = rearrange(posterior.mean, "(b t) c h w -> b c t h w", b=b)
        return EncoderOutput(latents=latents, mean=latents, logvar=rearrange(posterior.logvar, "(b t) c h w -> b c t h w", b=b))

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """[B, C, T, h, w] -> [B, 3, T, H, W] in [-1, 1] (as the VAE returns it, unclamped)."""
        if latents.ndim != 5 or latents.shape[1] != self.latent_channels:
            raise UserError(f"latents must be [B, {self.latent_channels}, t, h, w], got {tuple(latents.shape)}")
        b = latents.shape[0]
        frames = self.vae.decode(rearrange(latents, "b c t h w -> (b t) c h w")).sample
        return rearrange(frames, "(b t) c h w -> b c t h w", b=b)


def diffusers_config(config) -> dict:
    """A diffusers config (FrozenDict or config.json mapping) without its bookkeeping keys
    (`_class_name`, `_diffusers_version`, ...), as JSON-ready values."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dict(config).items() if not k.startswith("_")}
