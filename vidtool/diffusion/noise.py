"""Starting noise for sampling, drawn so that a batch equals its items run one by one."""

from __future__ import annotations

import torch


def initial_noise(shape: tuple[int, ...], batch: int,
                  generator: torch.Generator | list[torch.Generator] | None) -> torch.Tensor:
    """[batch, *shape] Gaussian noise: item i from generator i when given one per item (so item i
    does not depend on the others), else the whole batch from one generator (or the global RNG)."""
    if isinstance(generator, (list, tuple)):
        assert len(generator) == batch, f"{len(generator)} generators for {batch} prompts; pass one per prompt"
        return torch.stack([torch.randn(shape, generator=g, device=g.device) for g in generator])
    return torch.randn((batch, *shape), generator=generator, device=generator.device if generator is not None else "cpu")
