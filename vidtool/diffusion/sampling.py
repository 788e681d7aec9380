"""The Gaussian sampling loop, written once for every family: a diffusers scheduler (by name, see
`NoiseSchedule.sampler`) steps a `denoise(x, t) -> prediction` function from noise to a sample.

The loop knows nothing about networks; guidance (classifier-free, FusionFrames' context guidance,
HARIVO's mitigating gradient) lives in the denoise function the pipeline builds. `t` reaches the
denoise function as a [B] tensor of the scheduler's timestep (integer for DDIM/DDPM/DPM++/UniPC,
float for Euler), and `x` already scaled by the scheduler (`scale_model_input`), i.e. always the
variance-preserving x_t the networks were trained on.
"""

from __future__ import annotations

import inspect
from typing import Callable

import torch


@torch.no_grad()
def sample(denoise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], noise: torch.Tensor, scheduler, *,
           steps: int, generator: torch.Generator | list[torch.Generator] | None = None,
           progress: Callable[[int], None] | None = None) -> torch.Tensor:
    """Run `scheduler` for `steps` steps from standard-normal `noise` [B, ...]; `generator` feeds the
    stochastic samplers' per-step noise (DDPM), one per item keeps a batch equal to its items run one
    by one. `progress(k)` is called after step k. Returns the final x_0 estimate."""
    scheduler.set_timesteps(steps)
    takes_generator = "generator" in inspect.signature(scheduler.step).parameters
    extra = {"generator": generator} if takes_generator else {}
    x = noise * scheduler.init_noise_sigma
    for k, t in enumerate(scheduler.timesteps, start=1):
        model_input = scheduler.scale_model_input(x, t)
        prediction = denoise(model_input, timestep_batch(t, x.shape[0], x.device))
        x = scheduler.step(prediction, t, x, **extra).prev_sample
        if progress is not None:
            progress(k)
    return x


def timestep_batch(t: torch.Tensor, batch: int, device: torch.device) -> torch.Tensor:
    """A scheduler timestep as a [batch] tensor: int64 for integer schedules, float otherwise."""
    if t.is_floating_point():
        return torch.full((batch,), float(t), device=device)
    return torch.full((batch,), int(t), device=device)
