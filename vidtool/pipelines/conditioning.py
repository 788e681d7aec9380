"""The prompt side of classifier-free guidance, shared by the text-conditioned pipelines."""

from __future__ import annotations

import torch
from einops import repeat


def with_null(text: torch.Tensor, text_mask: torch.Tensor, null_text: torch.Tensor, null_mask: torch.Tensor,
              device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts [B, L, D] + masks [B, L] and the empty prompt ([L, D] or [B, L, D]) → the batch of 2B
    (conditional first, then unconditional) that one guided network call takes."""
    b = text.shape[0]
    if null_text.dim() == 2:
        null_text, null_mask = repeat(null_text, "l d -> b l d", b=b), repeat(null_mask, "l -> b l", b=b)
    return torch.cat([text, null_text]).to(device), torch.cat([text_mask, null_mask]).to(device)
