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


def correlate_frames(noise: torch.Tensor, shared: torch.Tensor, correlation: float) -> torch.Tensor:
    """PYoCo's mixed noise prior (Ge et al. 2023, "Preserve Your Own Correlation", eq. 4): every frame's
    noise is sqrt(rho) * one draw shared by the clip + sqrt(1 - rho) * its own draw, so each frame is
    still standard normal while any two frames correlate by rho. `noise` [B, C, T, ...] independent,
    `shared` [B, C, 1, ...]."""
    if not 0.0 <= correlation < 1.0:
        raise ValueError(f"noise correlation must be in [0, 1), got {correlation}")
    return correlation ** 0.5 * shared + (1.0 - correlation) ** 0.5 * noise


def initial_video_noise(shape: tuple[int, ...], batch: int, generator: torch.Generator | list[torch.Generator] | None,
                        correlation: float = 0.0) -> torch.Tensor:
    """`initial_noise` for clips of shape (C, T, ...); with `correlation` > 0 the frames share part of
    their noise (`correlate_frames`; the shared draw is one more frame from the same generator). With
    0 it is `initial_noise` exactly, so models trained without the prior sample as before."""
    if not correlation:
        return initial_noise(shape, batch, generator)
    c, t, *rest = shape
    drawn = initial_noise((c, t + 1, *rest), batch, generator)
    return correlate_frames(drawn[:, :, 1:], drawn[:, :, :1], correlation)


def frame_noise_like(clips: torch.Tensor, correlation: float) -> torch.Tensor | None:
    """Training noise for clips [B, C, T, ...] under the mixed prior (`correlate_frames`), on their
    device and dtype; None when `correlation` is 0, so the caller draws plain noise as before."""
    if not correlation:
        return None
    b, c, _, *rest = clips.shape
    own = torch.randn(clips.shape, device=clips.device, dtype=clips.dtype)
    return correlate_frames(own, torch.randn((b, c, 1, *rest), device=clips.device, dtype=clips.dtype), correlation)
