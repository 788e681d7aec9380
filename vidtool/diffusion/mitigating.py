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
then the scheduler's update with that eps (DDIM in the paper). Line 4 is the closed form of the gradient of Eq. 7's kernel
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


def guided_denoiser(denoise: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
                    schedule: NoiseSchedule, *, frames: int, cfg: float | CfgSchedule = CfgSchedule(),
                    alpha: float = 40.0) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Algorithm 1 lines 1-5 as a denoise function for `vidtool.diffusion.sampling.sample`:
    `denoise(x, t) -> (cond, uncond)` epsilon predictions in, the guided epsilon out, with CFG
    (App. D schedule) and MG guidance of strength `alpha` (§4: 40; 0 is plain CFG). Line 6 (the
    DDIM update, or any other scheduler's) is the sampler's."""
    if schedule.prediction_type != "epsilon":
        raise ValueError("MG sampling (Algorithm 1) works on epsilon predictions; this model predicts "
                         f"{schedule.prediction_type}")
    if alpha != 0 and frames < 3:
        raise ValueError(f"MG sampling needs at least 3 frames (S divides by log(F - 1)); got {frames}: pass alpha=0")
    cfg = as_cfg_schedule(cfg)
    alphas_cumprod = schedule.training_scheduler().alphas_cumprod

    def guided(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        step = int(round(float(t[0])))  # Euler's float timesteps read the nearest discrete abar
        cond, uncond = denoise(x, t)
        eps = guide(cond, uncond, cfg_weight(cfg.scale(step, schedule.train_timesteps)))  # line 1
        alpha_bar = alphas_cumprod[step].to(x.device, x.dtype)
        g = mitigating_gradient(x, eps, alpha_bar) if frames >= 3 else torch.zeros_like(eps)
        # Line 5 as guidance: extrapolate eps away from the prediction without the MG term.
        return guide(eps, eps - g, alpha)

    return guided
