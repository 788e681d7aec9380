"""The VQGAN-style adversarial objective (Esser et al. 2021) as plain functions, for autoencoders
trained with one optimizer and one backward pass.

`hinge_losses` returns the generator's term through a parameter-detached discriminator (it trains
only the generator) and the discriminator's hinge loss on detached reconstructions (it trains only
the discriminator). `adaptive_weight` is VQGAN's λ = ||∇ rec|| / ||∇ adv|| at the decoder's last
layer, which LaMD's Eq. 2 uses as well.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def hinge_losses(discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(adv_g, disc) for real and reconstructed clips."""
    frozen = {name: p.detach() for name, p in discriminator.named_parameters()}
    adv_g = -torch.func.functional_call(discriminator, frozen, (fake,)).mean()
    real_logits, fake_logits = discriminator(real), discriminator(fake.detach())
    disc = 0.5 * (F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean())
    return adv_g, disc


def adaptive_weight(rec: torch.Tensor, adv_g: torch.Tensor, last_layer: torch.Tensor, scale: float,
                    adaptive: bool = True) -> torch.Tensor:
    """λ · scale, or `scale` alone when not adaptive or when gradients are off (evaluation)."""
    if not (adaptive and torch.is_grad_enabled() and last_layer.requires_grad):
        return torch.tensor(scale, device=rec.device)
    g_rec, = torch.autograd.grad(rec, last_layer, retain_graph=True)
    g_adv, = torch.autograd.grad(adv_g, last_layer, retain_graph=True)
    return (g_rec.norm() / (g_adv.norm() + 1e-4)).clamp(0.0, 1e4).detach() * scale


__all__ = ["adaptive_weight", "hinge_losses"]
