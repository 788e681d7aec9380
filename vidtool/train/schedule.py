"""Learning rate as a pure function of the update number, so resuming needs no scheduler state."""

from __future__ import annotations

import math

from vidtool.train.config import TrainConfig


def lr_at(update: int, config: TrainConfig) -> float:
    """LR of optimizer update number `update` (1 = the first, `config.steps` = the last).

    Warm-up rises linearly to `lr` at update `warmup_steps` (update 1 gets lr / warmup_steps, not 0).
    The decay then goes from `lr` at update `warmup_steps` to `lr * min_lr_ratio` at the last update:
    half a cosine, a straight line, or nothing (constant).
    """
    if update <= config.warmup_steps:
        return config.lr * update / config.warmup_steps
    if config.schedule == "constant":
        return config.lr
    progress = (update - config.warmup_steps) / (config.steps - config.warmup_steps)
    if config.schedule == "linear":
        shape = 1.0 - progress
    else:
        shape = 0.5 * (1.0 + math.cos(math.pi * progress))
    return config.lr * (config.min_lr_ratio + (1.0 - config.min_lr_ratio) * shape)
