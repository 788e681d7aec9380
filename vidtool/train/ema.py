"""Exponential moving average of the trainable parameters."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

from vidtool.errors import UserError


def warmed_decay(decay: float, updates: int) -> float:
    """The decay used at the `updates`-th update (1-based): min(decay, (1 + n) / (10 + n)).

    A fixed decay d keeps d**n of the initial weights after n updates — 22% of a random init after
    1,500 updates at 0.999, enough to wreck a diffusion model's samples; the warm-up lets the
    average follow the early, fast-moving weights and reaches `decay` later.
    """
    return min(decay, (1 + updates) / (10 + updates))


class EMA:
    """After the n-th optimizer update: shadow <- d_n * shadow + (1 - d_n) * parameter, with
    d_n = warmed_decay(decay, n).

    The shadow starts equal to the parameters, has their dtype and device, and is keyed by parameter
    name so that it can be saved beside the optimizer state and restored on resume.
    """

    def __init__(self, params: dict[str, nn.Parameter], decay: float):
        self.decay = decay
        self.shadow = {name: p.detach().clone() for name, p in params.items()}

    @torch.no_grad()
    def update(self, params: dict[str, nn.Parameter], updates: int) -> None:
        """`updates`: optimizer updates done, this one included (the trainer's step count)."""
        decay = warmed_decay(self.decay, updates)
        for name, p in params.items():
            self.shadow[name].lerp_(p.detach(), 1.0 - decay)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.shadow)

    def load_state_dict(self, tensors: dict[str, torch.Tensor]) -> None:
        if set(tensors) != set(self.shadow):
            missing, unexpected = set(self.shadow) - set(tensors), set(tensors) - set(self.shadow)
            raise UserError(
                f"the saved EMA does not match the model (missing {sorted(missing)[:3]}, unexpected "
                f"{sorted(unexpected)[:3]}); resume with the model the run was started with"
            )
        for name, tensor in tensors.items():
            self.shadow[name].copy_(tensor)

    @contextlib.contextmanager
    def swapped_into(self, params: dict[str, nn.Parameter]) -> Iterator[None]:
        """Let the parameters hold the averages for the duration (to save them), without a copy."""

        def swap() -> None:
            for name, p in params.items():
                p.data, self.shadow[name] = self.shadow[name], p.data

        swap()
        try:
            yield
        finally:
            swap()
