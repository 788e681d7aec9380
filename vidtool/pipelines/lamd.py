"""LaMD image-to-video (paper §4): the MCD-VAE encodes the first frame's content, the DMG (a 2D
U-Net DDPM, Eq. 6) samples a motion latent z_m for it, conditioned on optional text or a class,
and the MCD-VAE's fusion decoder renders z_m on the content image. Motion transfer (§4.2.2) is
the same decoder given another image. Networks cast to bf16/fp16 take their inputs in that dtype under
autocast and hand back float32.

    motion = image_to_video(dmg, vae, image, text=..., ...)          # MotionOutput
    video = render(vae, motion.motion, motion.content)               # or another image's pixels
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from einops import repeat

from vidtool.diffusion.guidance import cfg_weight, guide
from vidtool.diffusion.noise import initial_noise
from vidtool.diffusion.sampling import sample
from vidtool.errors import UserError
from vidtool.pipelines.outputs import MotionOutput, VideoOutput
from vidtool.precision import autocast_like, model_dtype


def load_pair(dmg_folder: Path, device: str, dtype: torch.dtype | None = None):
    """The DMG in `dmg_folder`, the MCD-VAE its config names (found by tag) and that VAE's folder,
    both cast to `dtype` (default float32)."""
    from vidtool import checkpoint, model_store

    family = checkpoint.read_config(dmg_folder)["family"]
    if family != "dmg":
        raise UserError(f"{dmg_folder} is a {family} model; --family lamd needs a dmg folder (train-denoiser --family dmg)")
    dmg = checkpoint.from_pretrained(dmg_folder, device=device, dtype=dtype)
    vae_folder = model_store.find_by_tag(dmg.config.vae)
    return dmg, checkpoint.from_pretrained(vae_folder, device=device, dtype=dtype), vae_folder


def image_to_model(image) -> torch.Tensor:
    """uint8 [B, H, W, 3] (numpy or torch) -> float [B, 3, H, W] in [-1, 1]."""
    from vidtool.video import frames_to_model

    return frames_to_model(torch.as_tensor(image)[:, None])[:, :, 0]


def sample_motion(dmg, content: torch.Tensor, *, text: torch.Tensor | None = None,
                  text_mask: torch.Tensor | None = None, null_text: torch.Tensor | None = None,
                  null_mask: torch.Tensor | None = None, label: torch.Tensor | None = None, steps: int | None = None,
                  guidance_scale: float | None = None, scheduler: str = "ddpm",
                  generator: torch.Generator | list[torch.Generator] | None = None,
                  progress: Callable[[int], None] | None = None) -> torch.Tensor:
    """Motion latents z_m [B, d, h, w] (unscaled, for the MCD-VAE decoder) for content latents
    [B, d', h, w], by the reverse process on a `steps`-step subsequence (K, default the config's).
    Guidance compares with the same content and the empty prompt / no class."""
    dmg.check_inputs(content, text, label)
    c, dtype = dmg.config, model_dtype(dmg)
    steps = steps or c.sampling_steps
    scale = c.guidance_scale if guidance_scale is None else guidance_scale
    b = content.shape[0]
    content = content.to(dtype)
    text = None if text is None else text.to(dtype)
    with autocast_like(dmg):
        cond_tokens, cond_mask = dmg.condition(content, text, text_mask, label)
    if scale != 1.0 and (text is not None or label is not None):
        if text is not None:
            null_text = repeat(null_text.to(text.dtype), "l d -> b l d", b=b)
            null_mask = repeat(null_mask, "l -> b l", b=b)
        with autocast_like(dmg):
            uncond_tokens, uncond_mask = dmg.condition(content, null_text if text is not None else None,
                                                       null_mask if text is not None else None, None)
        contents, tokens = torch.cat([content, content]), torch.cat([cond_tokens, uncond_tokens])
        masks = torch.cat([cond_mask, uncond_mask])

        def denoise(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            with autocast_like(dmg):
                prediction = dmg.predict(torch.cat([x, x]).to(dtype), torch.cat([t, t]), contents, tokens, masks)
            cond, uncond = prediction.float().chunk(2)
            return guide(cond, uncond, cfg_weight(scale))
    else:
        def denoise(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            with autocast_like(dmg):
                return dmg.predict(x.to(dtype), t, content, cond_tokens, cond_mask).float()

    noise = initial_noise((c.motion_channels, c.sample_size, c.sample_size), b, generator).to(content.device)
    # One generator per item for DDPM's per-step noise too: a batch equals its items one by one.
    x = sample(denoise, noise, c.schedule.sampler(scheduler), steps=steps, generator=generator, progress=progress)
    return x / c.latent_scale


def image_to_video(dmg, vae, image: torch.Tensor, *, text: torch.Tensor | None = None,
                   text_mask: torch.Tensor | None = None, null_text: torch.Tensor | None = None,
                   null_mask: torch.Tensor | None = None, label: torch.Tensor | None = None, **options) -> MotionOutput:
    """uint8 first frames [B, H, W, 3] → their motion latents (`sample_motion`'s `options`), kept with
    the images for `render`."""
    z_m = sample_motion(dmg, encode_content(vae, image), text=text, text_mask=text_mask, null_text=null_text, null_mask=null_mask,
                        label=label, **options)
    return MotionOutput(z_m, torch.as_tensor(image))


def encode_content(vae, image: torch.Tensor) -> torch.Tensor:
    """uint8 first frames [B, H, W, 3] → the content latents the DMG is conditioned on, on the VAE's
    device."""
    device = next(vae.parameters()).device
    with autocast_like(vae):
        return vae.encode_content(image_to_model(image).to(device, model_dtype(vae))).latent


def encode_motion(vae, frames: torch.Tensor) -> MotionOutput:
    """uint8 clips [B, L, H, W, 3] (exactly the VAE's L frames) → z_m (the posterior mean) and the
    first frames: what `render` needs to replay the clip's motion on any image."""
    from vidtool.video import frames_to_model

    device = next(vae.parameters()).device
    with autocast_like(vae):
        z_m = vae.encode(frames_to_model(frames).to(device, model_dtype(vae))).latents.float().cpu()
    return MotionOutput(z_m, frames[:, 0].clone())


def render(vae, motion: torch.Tensor, content: torch.Tensor, fps: float | None = None) -> VideoOutput:
    """Motion latents [B, d, h, w] rendered on uint8 content images [B, H, W, 3] (their own first
    frames, or another image's: motion transfer) → uint8 video [B, L, H, W, 3]."""
    from vidtool.video import frames_from_model

    if vae.family != "mcd-vae":
        raise UserError(f"a motion file decodes with an mcd-vae, not {vae.family}")
    if motion.ndim != 4:
        raise UserError(f"'motion' must be [B, d, h, w] for the mcd-vae, got {tuple(motion.shape)}")
    device, dtype = next(vae.parameters()).device, model_dtype(vae)
    with autocast_like(vae):
        video = vae.decode(motion.to(device, dtype), image_to_model(content).to(device, dtype))
    return VideoOutput(frames_from_model(video.float().cpu()).numpy(), fps)
