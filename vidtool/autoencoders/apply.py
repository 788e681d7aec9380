"""Running an autoencoder over real clips: length and size fitting, input checks, chunked encode/decode.

The stages call these; they hold the rules a user can trip over (too short, tokens for a continuous
decoder, wrong channel count), each raised as a one-line `UserError`. A clip of any length (at least
the temporal factor) and any frame size is padded up to the model's factors and trimmed after decoding.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import torch

from vidtool.autoencoders.outputs import EncoderOutput
from vidtool.autoencoders.tiling import Tiling, encode_chunked, iter_decode
from vidtool.errors import UserError
from vidtool.video import frames_from_model, frames_to_model


def fit_length(frames: np.ndarray, temporal_factor: int, family: str) -> tuple[np.ndarray, int]:
    """Pad [B, T, H, W, 3] with its last frame up to a multiple of the temporal factor.

    Returns the padded clip and the original length, which decode uses to trim the padding away.
    """
    length = frames.shape[1]
    if length < temporal_factor:
        raise UserError(f"the clip has {length} frame(s); {family} needs at least {temporal_factor} "
                        f"(its temporal factor) — pass a longer clip")
    pad = -length % temporal_factor
    if pad:
        frames = np.concatenate([frames, np.repeat(frames[:, -1:], pad, axis=1)], axis=1)
    return frames, length


def fit_size(frames: np.ndarray, spatial_factor: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Pad [B, T, H, W, ...] by repeating its last row and column up to multiples of the spatial factor.

    Returns the padded clip and the original (H, W), which decode crops the output back to."""
    h, w = frames.shape[2:4]
    pad = [(0, 0)] * frames.ndim
    pad[2], pad[3] = (0, -h % spatial_factor), (0, -w % spatial_factor)
    return np.pad(frames, pad, mode="edge"), (h, w)


def encode_frames(model: Any, frames: np.ndarray, tiling: Tiling, device: str) -> EncoderOutput:
    """uint8 [B, T, H, W, 3] (T a multiple of the temporal factor) → latents and, if quantized, tokens."""
    video = frames_to_model(torch.from_numpy(frames)).to(device)
    out = encode_chunked(model, video, tiling)
    return EncoderOutput(latents=out.latents.float().cpu(), tokens=None if out.tokens is None else out.tokens.cpu())


def latents_for(model: Any, kind: str, tensor: torch.Tensor) -> torch.Tensor:
    """Turn a `latents` or `tokens` tensor into the decoder's latent input, checking it fits the model."""
    family = model.family
    if kind == "tokens":
        if not hasattr(model, "decode_tokens"):
            raise UserError(f"token ids need a quantized decoder (mbq-vae); {family} is continuous — "
                            "decode these tokens with the tokenizer that wrote them")
        codebook = model.codebook_size
        if int(tensor.min()) < 0 or int(tensor.max()) >= codebook:
            raise UserError(f"token ids range over [{int(tensor.min())}, {int(tensor.max())}]; the codebook has {codebook} entries")
        return model.indices_to_latents(tensor.long())
    channels = tensor.shape[1]
    if channels != model.latent_channels:
        raise UserError(f"latents have {channels} channels; the {family} decoder expects {model.latent_channels}")
    return tensor.float()


def decode_frames(model: Any, latents: torch.Tensor, tiling: Tiling, device: str) -> Iterator[np.ndarray]:
    """Yield uint8 [B, T_chunk, H, W, 3] pieces of the decoded clip, in order."""
    for chunk in iter_decode(model, latents.to(device), tiling):
        yield frames_from_model(chunk.float().cpu()).numpy()
