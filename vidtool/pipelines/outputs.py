"""What pipelines return: small dataclasses, not tuples (diffusers' `*PipelineOutput` habit)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class LatentsOutput:
    latents: torch.Tensor  # unscaled latents [B, C, T, h, w], in the autoencoder's space
    fps: float | None  # frame rate of the T frames, where the model records one


@dataclass
class TokensOutput:
    tokens: torch.Tensor  # token ids [B, t, h, w] of the tokenizer the model was trained on
    fps: float  # the frame rate the video was conditioned on
    frames: int  # video frames the tokens decode to


@dataclass
class MotionOutput:
    motion: torch.Tensor  # LaMD z_m [B, d, h, w], unscaled, for the MCD-VAE's decoder
    content: torch.Tensor  # uint8 [B, H, W, 3]: the image the motion starts from


@dataclass
class VideoOutput:
    frames: np.ndarray  # uint8 [B, T, H, W, 3]
    fps: float | None
