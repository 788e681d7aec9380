"""HARIVO text-to-video (paper §3): a frozen text-to-image U-Net with trained temporal layers,
sampled with classifier-free guidance on App. D's schedule and mitigating-gradient (MG) guidance
(§3.7, Algorithm 1) at every step of the scheduler. A network cast to bf16/fp16 runs under
autocast and hands back float32 predictions, so the guidance arithmetic stays float32.

    video = generate(model, text, mask, null_text, null_mask, alpha=40)   # latents for `decode`
"""

from __future__ import annotations

from typing import Callable

import torch

from vidtool.diffusion import mitigating
from vidtool.diffusion.noise import initial_noise
from vidtool.diffusion.sampling import sample
from vidtool.errors import UserError
from vidtool.pipelines.conditioning import pooled_with_null, with_null
from vidtool.pipelines.outputs import LatentsOutput
from vidtool.precision import autocast_like, model_dtype


def generate(model, text: torch.Tensor, text_mask: torch.Tensor, null_text: torch.Tensor, null_mask: torch.Tensor,
             *, frames: int | None = None, size: tuple[int, int] | None = None, steps: int = 25,
             cfg: float | mitigating.CfgSchedule | None = None,
             alpha: float = 40.0, scheduler: str = "ddim",
             generator: torch.Generator | list[torch.Generator] | None = None,
             progress: Callable[[int], None] | None = None, text_embeds: torch.Tensor | None = None,
             null_text_embeds: torch.Tensor | None = None) -> LatentsOutput:
    """Videos for prompts `text` [B, L, D] with CFG (a number: constant scale; default: the config's
    `sampling_cfg`, else App. D's schedule) and MG guidance of strength `alpha` (0: off).

    `null_text` [L, D] or [B, L, D] is the empty prompt; `text_embeds` [B, P] and `null_text_embeds`
    [P] their pooled embeddings, which an SDXL base takes. `generator`: one per prompt (item i's noise
    comes from generator i alone, so a batch equals its items run one by one) or one for the batch.
    `size`: the latent grid (h, w) (default: the training size; the U-Net, the mapping network and
    the temporal layers are convolutions and attention without spatial position tables, so other
    sizes run). At most `config.frames` frames: the frame-wise token generator makes that many.
    Returns unscaled latents [B, C, F, h, w] at the training clips' rate."""
    config = model.config
    frames = frames or config.frames
    if frames > config.frames:
        raise UserError(f"this HARIVO model makes at most {config.frames} frames (its frame-wise token generator was "
                        f"trained for F = {config.frames}); pass --frames {config.frames} or fewer")
    if alpha != 0 and frames < 3:
        raise UserError("HARIVO's mitigating-gradient sampling needs at least 3 frames (Algorithm 1 divides by "
                        "log(F - 1)); pass --frames 3 or more, or --alpha 0 for plain guidance")
    device = next(model.parameters()).device
    base = config.base
    h, w = size or (base.sample_size, base.sample_size)
    noise = initial_noise((base.latent_channels, frames, h, w), text.shape[0], generator)
    dtype = model_dtype(model)
    texts, masks = with_null(text, text_mask, null_text, null_mask, device)
    texts = texts.to(dtype)
    pooled = pooled_with_null(text_embeds, null_text_embeds, device)

    def denoise(x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with autocast_like(model):
            prediction = model.predict(torch.cat([x, x]).to(dtype), torch.cat([t, t]), texts, masks, pooled)
        return prediction.float().chunk(2)

    if cfg is None:
        cfg = mitigating.CfgSchedule() if config.sampling_cfg is None else config.sampling_cfg
    guided = mitigating.guided_denoiser(denoise, config.schedule, frames=frames, cfg=cfg, alpha=alpha)
    latents = sample(guided, noise.to(device), config.schedule.sampler(scheduler), steps=steps, generator=generator,
                     progress=progress)
    return LatentsOutput(latents / config.latent_scale, model.fps)
