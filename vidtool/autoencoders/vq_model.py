"""A diffusers `VQModel` (Kandinsky's MoVQ: the `movq/` folder of a Kandinsky 2.2 or Kandinsky 3 pipeline)
used as a video autoencoder, frame by frame: temporal factor 1, spatial factor 2^(levels-1).

Latents are what the diffusers Kandinsky pipelines diffuse: the encoder's output after `quant_conv`,
*before* quantisation (`VQModel.encode(...).latents`), decoded with `force_not_quantize=True` (the
codebook is skipped; a MoVQ decoder's spatial norms are conditioned on the latent itself). The
pipelines neither multiply nor divide these latents by the config's `scaling_factor` (Kandinsky3Pipeline
decodes the sampled latents as they are, and its img2img variant diffuses `movq.encode(image).latents`
unscaled), so the declared scale is 1: a Kandinsky 3 U-Net works on raw MoVQ latents.

Read from the folder diffusers writes (`config.json` with `"_class_name": "VQModel"`, or a pipeline
root's `movq/`) with no conversion step; the tag `vq-model@digest` is the digest of that weights file,
so latents made with it decode with it.
"""

from __future__ import annotations


from einops import rearrange

from vidtool.autoencoders.outputs import EncoderOutput
from vidtool.autoencoders.sd_vae import SDVAE, SDVAEConfig
from vidtool.errors import UserError


def preset(name: str, **overrides) -> SDVAEConfig:
    raise ValueError("vq-model is a pretrained diffusers VQModel (Kandinsky's MoVQ), not trained here: pass its "
                     "folder (or a Kandinsky pipeline root) as --vae / --model")


class VQModelAE(SDVAE):
    family = "vq-model"
    diffusers_class = "VQModel"

    @property
    def latent_channels(self) -> int:
        return int(self.config.diffusers.get("latent_channels", 3))

    @property
    def scaling_factor(self) -> float:
        """1: the Kandinsky pipelines diffuse the MoVQ's latents unscaled (module docstring)."""
        return 1.0

    def encode(self, video) -> EncoderOutput:
        """[B, 3, T, H, W] in [-1, 1] -> latents before quantisation [B, C, T, h, w]."""
        b = video.shape[0]
        if video.shape[-1] % self.spatial_factor or video.shape[-2] % self.spatial_factor:
            raise UserError(f"frame size {tuple(video.shape[-2:])} must be a multiple of {self.spatial_factor}")
        latents = self.vae.encode(rearrange(video, "b c t h w -> (b t) c h w")).latents
        latents = rearrange(latents, "(b t) c h w -> b c t h w", b=b)
        return EncoderOutput(latents=latents)

    def decode(self, latents):
        """[B, C, T, h, w] -> [B, 3, T, H, W], decoded without quantisation as the pipelines do."""
        if latents.ndim != 5 or latents.shape[1] != self.latent_channels:
            raise UserError(f"latents must be [B, {self.latent_channels}, t, h, w], got {tuple(latents.shape)}")
        b = latents.shape[0]
        frames = self.vae.decode(rearrange(latents, "b c t h w -> (b t) c h w"), force_not_quantize=True).sample
        return rearrange(frames, "(b t) c h w -> b c t h w", b=b)
