"""Guidance, written once: classifier-free guidance, FusionFrames' context guidance and HARIVO's
mitigating-gradient sampling all extrapolate a conditional prediction away from a weaker one.

    guided = cond + weight * (cond - uncond)

Classifier-free guidance with scale s is weight = s - 1 (uncond + s (cond - uncond)); context
guidance (FusionFrames Eq. 5: (1 + w) z(m=1) - w z(m=0)) is weight = w.
"""

from __future__ import annotations

import torch


def guide(cond: torch.Tensor, uncond: torch.Tensor, weight: float | torch.Tensor) -> torch.Tensor:
    return cond + weight * (cond - uncond)


def cfg_weight(scale: float) -> float:
    """The `guide` weight of classifier-free guidance scale s (s = 1: no guidance)."""
    return scale - 1.0
