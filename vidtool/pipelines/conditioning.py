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


def pooled_with_null(text_embeds: torch.Tensor | None, null_text_embeds: torch.Tensor | None,
                     device: torch.device | str) -> torch.Tensor | None:
    """Pooled text embeddings [B, P] and the empty prompt's ([P] or [B, P]) → the [2B, P] of a guided
    call, in `with_null`'s order; None when there are none (every base but an SDXL one)."""
    if text_embeds is None:
        return None
    if null_text_embeds is None:
        raise ValueError("pooled text embeddings need the empty prompt's too (null_text_embeds)")
    if null_text_embeds.dim() == 1:
        null_text_embeds = repeat(null_text_embeds, "p -> b p", b=text_embeds.shape[0])
    return torch.cat([text_embeds, null_text_embeds]).to(device)
