"""HARIVO's mitigating-gradient (MG) sampling (paper §3.7, Algorithm 1, Eqs. 6-7) on DDIM with the
classifier-free guidance schedule of Appendix D.

A sampler, not a network: it calls `denoise(x, t) -> (cond, uncond)` (the epsilon predictions of a
video [B, C, F, h, w] with and without the prompt) and knows nothing else about the model.

Per step, Algorithm 1:
  1. eps = s(x_t, 0) + w_cfg (s(x_t, c) - s(x_t, 0))
  2. D = x0_hat[1:] - x0_hat[:-1] over frames,  x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)
  3. S = median_j ||D_j||^2 / log(F - 1)
  4. G = 2 exp(-||D||^2 / S) D / S * omega,  omega = sqrt((1 - abar_t) / abar_t)
  5. eps <- eps + alpha concat(0, G)
then the DDIM update with that eps. Line 4 is the closed form of the gradient of Eq. 7's kernel
sum with respect to the later frame of each pair (2 sigma^2 = S), so it pulls frame j's predicted
clean latent towards frame j-1's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from vidtool.diffusion.guidance import cfg_weight, guide
from vidtool.diffusion.schedulers import NoiseSchedule


@dataclass(frozen=True)
class CfgSchedule:
    """App. D: "a CFG scale of 10-15 up to 0.7T and 7.5 thereafter" - stronger guidance while t is
    near T, i.e. `early` for t >= switch * T, `late` below."""

    early: float = 12.5
    late: float = 7.5
    switch: float = 0.7

    def scale(self, t: int, train_timesteps: int) -> float:
        return self.early if t >= self.switch * train_timesteps else self.late


def as_cfg_schedule(cfg: float | CfgSchedule) -> CfgSchedule:
    """A plain number is a constant scale."""
    return cfg if isinstance(cfg, CfgSchedule) else CfgSchedule(early=float(cfg), late=float(cfg))


def mitigating_gradient(x: torch.Tensor, eps: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """Algorithm 1 lines 2-4 for a video batch x, eps [B, C, F, h, w] at one timestep: the term
    concat(0, G_phi) [B, C, F, h, w] that line 5 adds to eps (scaled by alpha)."""
    frames = x.shape[2]
    if frames < 3:
        raise ValueError(f"MG sampling needs at least 3 frames (S divides by log(F - 1)); got {frames}")
    x0 = (x - (1 - alpha_bar).sqrt() * eps) / alpha_bar.sqrt()
    diff = x0[:, :, 1:] - x0[:, :, :-1]  # D: [B, C, F-1, h, w]
    dist2 = diff.square().sum(dim=(1, 3, 4))  # ||D_j||^2: [B, F-1]
    # torch.median takes the lower of the two middle values for an even count of frame pairs.
    s = (dist2.sqrt().median(dim=1).values.square() / math.log(frames - 1)).clamp_min(torch.finfo(x.dtype).tiny)
    omega = ((1 - alpha_bar) / alpha_bar).sqrt()
    weight = 2 * torch.exp(-dist2 / s[:, None]) / s[:, None] * omega  # [B, F-1]
    g = weight[:, None, :, None, None] * diff
    return torch.cat([torch.zeros_like(g[:, :, :1]), g], dim=2)


@torch.no_grad()
def sample(denoise: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]], noise: torch.Tensor,
           schedule: NoiseSchedule, *, steps: int = 25, cfg: float | CfgSchedule = CfgSchedule(),
           alpha: float = 40.0, progress: Callable[[int], None] | None = None) -> torch.Tensor:
    """DDIM from `noise` [B, C, F, h, w] with CFG (App. D schedule) and MG guidance of strength
    `alpha` (§4: 40); returns the final (still scaled) latents. alpha = 0 is plain CFG sampling.
    `progress(k)` is called after step k."""
    if schedule.prediction_type != "epsilon":
        raise ValueError("MG sampling (Algorithm 1) works on epsilon predictions; this model predicts "
                         f"{schedule.prediction_type}")
    frames = noise.shape[2]
    if alpha != 0 and frames < 3:
        raise ValueError(f"MG sampling needs at least 3 frames (S divides by log(F - 1)); got {frames}: pass alpha=0")
    cfg = as_cfg_schedule(cfg)
    scheduler = schedule.sampler("ddim")
    scheduler.set_timesteps(steps)
    alphas_cumprod = scheduler.alphas_cumprod.to(noise.device, noise.dtype)
    x = noise
    for k, t in enumerate(scheduler.timesteps, start=1):
        cond, uncond = denoise(x, torch.full((x.shape[0],), int(t), device=x.device))
        eps = guide(cond, uncond, cfg_weight(cfg.scale(int(t), schedule.train_timesteps)))  # line 1
        g = mitigating_gradient(x, eps, alphas_cumprod[int(t)]) if frames >= 3 else torch.zeros_like(eps)
        # Line 5 as guidance: extrapolate eps away from the prediction without the MG term.
        eps = guide(eps, eps - g, alpha)
        x = scheduler.step(eps, t, x).prev_sample
        if progress:
            progress(k)
    return x
