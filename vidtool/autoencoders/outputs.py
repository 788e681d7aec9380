"""Small output records shared by the autoencoders (diffusers' `DecoderOutput` style)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class EncoderOutput:
    latents: torch.Tensor  # [B, C, t, h, w]: the continuous (or quantized) latent the decoder takes
    tokens: torch.Tensor | None = None  # [B, t, h, w] int64 codebook indices, quantized families only
    mean: torch.Tensor | None = None  # posterior mean, KL families only
    logvar: torch.Tensor | None = None  # posterior log-variance, KL families only
