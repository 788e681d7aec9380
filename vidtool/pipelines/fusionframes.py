"""FusionFrames text-to-video (paper §4): a frozen text-to-image U-Net with temporal blocks samples
keyframes at 2 fps (§4.1), the interpolation U-Net puts three frames between each pair (§4.2,
T → 4T − 3, once per pass), and the MoVQ decoder renders them.

    keyframes = sample_keyframes(keyframe_model, text, mask, null_text, null_mask)
    video = interpolate(interpolator, keyframes.latents, times=1)

Guidance: classifier-free on the prompt for keyframes (and images); context guidance (Eq. 5) for
interpolation, which compares with the keyframes dropped (m = 0). A network cast to bf16/fp16
takes its inputs in that dtype under autocast and hands back float32, so the guidance and the
sampler's arithmetic stay float32.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from einops import rearrange

from vidtool.diffusion.guidance import cfg_weight, guide
from vidtool.diffusion.noise import initial_video_noise
from vidtool.diffusion.sampling import sample
from vidtool.pipelines.conditioning import pooled_with_null, with_null
from vidtool.pipelines.outputs import LatentsOutput, VideoOutput
from vidtool.precision import autocast_like, model_dtype

LATER_SKIP = 1  # §5: s = 1 for the second and later interpolation passes


def sample_images(t2i, text: torch.Tensor, text_mask: torch.Tensor, null_text: torch.Tensor, null_mask: torch.Tensor,
                  *, noise: torch.Tensor, steps: int = 25, cfg: float = 5.0, scheduler: str = "ddim",
                  text_embeds: torch.Tensor | None = None, null_text_embeds: torch.Tensor | None = None) -> torch.Tensor:
    """The text-to-image base alone: images from `noise` [N, C, h, w] with classifier-free guidance
    (`text_embeds`/`null_text_embeds`: an SDXL base's pooled embeddings); returns unscaled latents
    [N, C, h, w]."""
    dtype = model_dtype(t2i)
    texts, masks = with_null(text, text_mask, null_text, null_mask, noise.device)
    texts = texts.to(dtype)
    pooled = pooled_with_null(text_embeds, null_text_embeds, noise.device)

    def denoise(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        with autocast_like(t2i):
            prediction = t2i.predict(torch.cat([x, x]).to(dtype), torch.cat([t, t]), texts, masks, text_embeds=pooled)
        cond, uncond = prediction.float().chunk(2)
        return guide(cond, uncond, cfg_weight(cfg))

    x = sample(denoise, noise, t2i.config.schedule.sampler(scheduler), steps=steps)
    return x / t2i.config.latent_scale


def sample_keyframes(model, text: torch.Tensor, text_mask: torch.Tensor, null_text: torch.Tensor,
                     null_mask: torch.Tensor, *, frames: int | None = None, size: tuple[int, int] | None = None,
                     steps: int = 25, cfg: float = 5.0, scheduler: str = "ddim", generator: torch.Generator | list[torch.Generator] | None = None,
                     progress: Callable[[int], None] | None = None, text_embeds: torch.Tensor | None = None,
                     null_text_embeds: torch.Tensor | None = None) -> LatentsOutput:
    """Keyframes for prompts `text` [B, L, D] (§4.1) with classifier-free guidance of scale `cfg`.

    `null_text` [L, D] or [B, L, D] is the empty prompt; `text_embeds` [B, P] and `null_text_embeds`
    [P] their pooled embeddings, which an SDXL base takes. `generator`: one per prompt (item i's noise
    comes from generator i alone, so a batch equals its items run one by one) or one for the batch.
    `size` is the latent grid (h, w) (default: the training size; the U-Net is convolutional and its
    attention has no spatial position table, so other sizes run). Returns unscaled latents
    [B, C, T, h, w] at the model's keyframe rate."""
    frames = frames or model.config.keyframes
    device = model.frame_positions.weight.device
    base = model.config.base
    h, w = size or (base.sample_size, base.sample_size)
    noise = initial_video_noise((base.latent_channels, frames, h, w), text.shape[0], generator,
                                getattr(model.config, "noise_correlation", 0.0))
    positions, dtype = model.positions(frames), model_dtype(model)
    texts, masks = with_null(text, text_mask, null_text, null_mask, device)
    texts = texts.to(dtype)
    pooled = pooled_with_null(text_embeds, null_text_embeds, device)

    def denoise(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        with autocast_like(model):
            prediction = model.predict(torch.cat([x, x]).to(dtype), torch.cat([t, t]), texts, masks, positions,
                                       text_embeds=pooled)
        cond, uncond = prediction.float().chunk(2)
        return guide(cond, uncond, cfg_weight(cfg))

    x = sample(denoise, noise.to(device), base.schedule.sampler(scheduler), steps=steps, generator=generator,
               progress=progress)
    return LatentsOutput(x / base.latent_scale, model.fps)


def interpolate(model, keyframes: torch.Tensor, *, steps: int = 25, skip: int = 3, tp: int = 0,
                guidance: float = 0.25, times: int = 1, scheduler: str = "ddim",
                generator: torch.Generator | None = None, fps: float | None = None,
                progress: Callable[[int], None] | None = None) -> LatentsOutput:
    """Unscaled keyframes [B, C, T, h, w] → [B, C, 4T − 3, h, w] per pass, `times` passes (§5: the
    first with skip-frame `skip`, later ones s = 1). The keyframes are kept unchanged at frames 4j.
    `model` is an `interp` (§4.2) or `interp-mfi` (the masked-frame baseline) model; `fps` (the
    keyframes' rate) becomes fps · 4^times. `progress(k)` counts steps over all passes."""
    latents = keyframes
    for i, s in enumerate([skip] + [LATER_SKIP] * (times - 1)):
        done = None if progress is None else (lambda k, i=i: progress(i * steps + k))
        latents = _interpolate_once(model, latents, steps=steps, skip=s, tp=tp, guidance=guidance,
                                    scheduler=scheduler, generator=generator, progress=done)
    return LatentsOutput(latents, fps * 4**times if fps else None)


def _interpolate_once(model, keyframes: torch.Tensor, *, steps: int, skip: int, tp: int, guidance: float,
                      scheduler: str, generator: torch.Generator | None,
                      progress: Callable[[int], None] | None) -> torch.Tensor:
    from vidtool.generators.interpolation import FRAMES_PER_GROUP, as_batch, check_inputs, interleave, perturb
    from vidtool.generators.masked_interpolation import WINDOW

    config = model.config
    check_inputs(keyframes, model.latent_channels, tp, config.max_perturbation)
    b, c, t, h, w = keyframes.shape
    device = keyframes.device
    level = as_batch(tp, b, device)
    cond = perturb(config.schedule, keyframes * config.latent_scale, level, generator)
    # interp predicts the 3 in-betweens of each pair; interp-mfi denoises 5-frame windows whose
    # ends are the (masked-in) keyframes.
    masked = model.family == "interp-mfi"
    shape = (b, c, t - 1, WINDOW, h, w) if masked else (b, c, FRAMES_PER_GROUP * (t - 1), h, w)
    noise = torch.randn(shape, generator=generator, device=device)
    # Eq. 5: one batched pass, conditional (m = 1, tp) and unconditional (m = 0: zero keyframes, tp = 0).
    dtype = model_dtype(model)
    keyframes_both = torch.cat([cond, torch.zeros_like(cond)]).to(dtype)
    skips, levels = as_batch(skip, 2 * b, device), torch.cat([level, torch.zeros_like(level)])
    present = (torch.arange(2 * b, device=device) < b,) if masked else ()

    def denoise(x: torch.Tensor, ts: torch.Tensor) -> torch.Tensor:
        with autocast_like(model):
            prediction = model.predict(torch.cat([x, x]).to(dtype), torch.cat([ts, ts]), keyframes_both, skips,
                                       levels, *present)
        conditional, unconditional = prediction.float().chunk(2)
        return guide(conditional, unconditional, guidance)

    x = sample(denoise, noise, config.schedule.sampler(scheduler), steps=steps, generator=generator,
               progress=progress)
    if masked:
        x = rearrange(x[:, :, :, 1:-1], "b c g k h w -> b c (g k) h w")
    return interleave(keyframes, x / config.latent_scale)


def text_to_video(keyframe_model, interpolator, autoencoder, text: torch.Tensor, text_mask: torch.Tensor,
                  null_text: torch.Tensor, null_mask: torch.Tensor, *, steps: int = 25, cfg: float = 5.0,
                  times: int = 1, scheduler: str = "ddim", seed: int = 0, text_embeds: torch.Tensor | None = None,
                  null_text_embeds: torch.Tensor | None = None) -> VideoOutput:
    """The whole of §4 in one call: keyframes (item i from seed + i), interpolation and decoding.
    The stages run the same three steps as separate processes (`generate | interpolate | decode`)."""
    from vidtool.autoencoders.apply import decode_frames
    from vidtool.autoencoders.tiling import default_tiling

    generators = [torch.Generator().manual_seed(seed + i) for i in range(text.shape[0])]
    keyframes = sample_keyframes(keyframe_model, text, text_mask, null_text, null_mask, steps=steps, cfg=cfg,
                                 scheduler=scheduler, generator=generators, text_embeds=text_embeds,
                                 null_text_embeds=null_text_embeds)
    device = keyframes.latents.device
    video = interpolate(interpolator, keyframes.latents, steps=steps, times=times, scheduler=scheduler,
                        generator=torch.Generator(device).manual_seed(seed), fps=keyframes.fps)
    frames = np.concatenate(list(decode_frames(autoencoder, video.latents, default_tiling(autoencoder), str(device))),
                            axis=1)
    return VideoOutput(frames, video.fps)
