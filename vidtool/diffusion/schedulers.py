"""Gaussian noise schedules through diffusers' DDPM/DDIM schedulers.

One `NoiseSchedule` config travels in every generator's config, so training (`add_noise`, the
target for the chosen parameterisation) and sampling (a DDIM or DDPM scheduler over the same betas)
can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

PREDICTIONS = ("epsilon", "v_prediction")
# Beta schedules every sampler below (and DDPM training) computes.
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
MAX_TIMESTEPS = 100_000


@dataclass
class NoiseSchedule:
    train_timesteps: int = 1000
    beta_start: float = 0.00085  # Stable Diffusion's scaled-linear schedule
    beta_end: float = 0.012
    beta_schedule: str = "scaled_linear"
    prediction_type: str = "epsilon"  # or "v_prediction" (FusionFrames' interpolation, §4.2)

    def __post_init__(self):
        """Every value checked (a config.json edited by hand reaches here): diffusers would build
        NaN betas without a word, or fail deep inside sampling."""
        import math

        if self.prediction_type not in PREDICTIONS:
            raise ValueError(f"prediction_type must be one of {PREDICTIONS}, got {self.prediction_type!r}")
        if self.beta_schedule not in BETA_SCHEDULES:
            raise ValueError(f"beta_schedule must be one of {BETA_SCHEDULES}, got {self.beta_schedule!r}")
        steps = self.train_timesteps
        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 < steps <= MAX_TIMESTEPS:
            raise ValueError(f"train_timesteps must be a whole number from 2 to {MAX_TIMESTEPS}, got {steps!r}")
        for name in ("beta_start", "beta_end"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or not 0 < value < 1:
                raise ValueError(f"{name} must be a number between 0 and 1, got {value!r}")
        if self.beta_start > self.beta_end:
            raise ValueError(f"beta_start {self.beta_start} is above beta_end {self.beta_end}")

    def _kwargs(self) -> dict:
        return dict(num_train_timesteps=self.train_timesteps, beta_start=self.beta_start, beta_end=self.beta_end,
                    beta_schedule=self.beta_schedule, prediction_type=self.prediction_type)

    def training_scheduler(self):
        from diffusers import DDPMScheduler

        return DDPMScheduler(**self._kwargs())

    def sampler(self, kind: str = "ddim"):
        """A fresh sampling scheduler over these betas, by name (`SAMPLERS`): "ddim" (deterministic,
        eta 0), "ddpm" (ancestral), "dpm++" (DPM-Solver++ 2M), "unipc" (UniPC) or "euler" (Euler)."""
        import diffusers

        if kind not in SAMPLERS:
            raise ValueError(f"unknown sampler {kind!r}; known: {', '.join(SAMPLERS)}")
        cls_name, options = SAMPLERS[kind]
        # "trailing" spacing reaches t = T-1 at the first step, so few-step sampling starts from
        # pure noise, and no final-alpha shortcut is needed at the end.
        return getattr(diffusers, cls_name)(**self._kwargs(), **options, timestep_spacing="trailing")


# Sampler name (the CLI's --scheduler) -> diffusers scheduler class and its options.
SAMPLERS: dict[str, tuple[str, dict]] = {
    "ddim": ("DDIMScheduler", {"clip_sample": False, "set_alpha_to_one": False}),
    "ddpm": ("DDPMScheduler", {"clip_sample": False}),
    "dpm++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
}


def diffusion_pair(schedule: NoiseSchedule, clean: torch.Tensor, generator: torch.Generator | None = None,
                   timesteps: torch.Tensor | None = None,
                   noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(noisy, timesteps, target) for a batch of clean samples [B, ...]: uniform t per sample unless
    given, target = noise (epsilon) or v = alpha_t * noise - sigma_t * x0 (v-prediction). `noise`:
    the draw to use (default: standard normal, independent per element)."""
    scheduler = schedule.training_scheduler()
    if noise is None:
        noise = torch.randn(clean.shape, generator=generator, dtype=clean.dtype).to(clean.device)
    if timesteps is None:
        timesteps = torch.randint(0, schedule.train_timesteps, (clean.shape[0],), generator=generator).to(clean.device)
    noisy = scheduler.add_noise(clean, noise, timesteps)
    target = noise if schedule.prediction_type == "epsilon" else scheduler.get_velocity(clean, noise, timesteps)
    return noisy, timesteps, target
