"""Encode and decode clips longer and larger than memory allows in one piece.

Time is cut into chunks whose boundaries fall on multiples of the temporal factor; each chunk is run
with `margin` latent frames of context on either side that are computed and then discarded, so the
model never sees an artificial clip boundary next to a kept frame. Decoding streams: chunks are
yielded as they finish, so peak memory is set by the chunk size, not by the clip length.
Space (decode only) is cut into overlapping latent tiles whose outputs are blended with linear
ramps across the overlap; encoding keeps whole frames because token ids cannot be blended.
A model that codes every frame on its own (MoVQ's 2D encoder; its decoder without temporal layers)
says so (`encodes_frames_alone`, `decodes_frames_alone`) and gets no context in that direction:
context would change nothing in its output and cost two more frames computed for every one kept.
A model trained on clips of one length may declare it (`window`, in latent frames): `default_tiling`
then cuts time into independent windows of that length, with no context, since such a model codes
a window better than any longer stretch.
A model cast to a lower precision gets its input in that dtype and runs under autocast; what it
returns is blended and returned in float32, so tile blending and the rounding of decoded pixels to
uint8 (`video.frames_from_model`) add nothing to bf16's own steps (2^-8 near ±1: half a level).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import torch

from vidtool.autoencoders.outputs import EncoderOutput
from vidtool.precision import autocast_like, model_dtype


@dataclass(frozen=True)
class Tiling:
    chunk: int = 4  # latent frames kept per temporal chunk
    # Latent frames of context on each side, computed then dropped. It must cover the decoders'
    # temporal receptive field where it matters: 4 brings chunked decodes within 40 dB of whole ones
    # (benchmarks/decode_memory.py), 1 did not.
    margin: int = 4
    tile: int | None = None  # latent tile edge for spatial tiling; None = whole frames
    overlap: int = 4  # latent pixels shared by neighbouring tiles, blended linearly

    def __post_init__(self) -> None:
        assert self.chunk >= 1 and self.margin >= 0, "chunk must be ≥ 1 and margin ≥ 0"
        assert self.tile is None or self.tile > self.overlap >= 0, "tile must exceed overlap; try tile=16, overlap=4"


# Pixels per chunk for a model that codes frames alone: a CPU convolution runs several times faster
# per frame on 16 frames at once than on 4 (cm-vae-tiny at 176x144: 1.4 s vs 3.3 s for 16 frames),
# and with no context frames memory is all a longer chunk costs: 2^20 pixels = 16 frames of 256².
FRAMES_ALONE_PIXELS = 2**20


def default_tiling(model: Any, chunk: int | None = None, context: int | None = None, tile: int | None = None,
                   frame_pixels: int | None = None, *, encode: bool = False) -> Tiling:
    """The tiling a stage uses: the model's own windows (`model.window` latent frames, no context)
    when it declares them; for a model that codes every frame alone in this direction (`encode`:
    `encodes_frames_alone`, else `decodes_frames_alone`), chunks of about FRAMES_ALONE_PIXELS pixels
    (given the frames' `frame_pixels`, in output pixels) with no context; else `Tiling()`. So
    movq-tiny-video, whose 2D encoder codes frames alone but whose decoder mixes them, encodes in
    long chunks (4-frame chunks made its 64² encode 2.8x its bare network) and decodes in 4-frame
    ones with context. A `chunk` or `context` the user gives wins."""
    window = getattr(model, "window", None)
    alone = getattr(model, "encodes_frames_alone" if encode else "decodes_frames_alone", False)
    if window:
        tiling = Tiling(chunk=window, margin=0)
    elif alone and frame_pixels:
        frames = max(4, FRAMES_ALONE_PIXELS // frame_pixels) // model.temporal_factor
        tiling = Tiling(chunk=max(1, frames), margin=0)
    else:
        tiling = Tiling()
    return replace(tiling, chunk=chunk or tiling.chunk, margin=tiling.margin if context is None else context,
                   tile=tile)


def _spans(length: int, chunk: int, margin: int) -> Iterator[tuple[int, int, int, int]]:
    """(start, stop) of the kept span and (lo, hi) of the span computed with context."""
    for start in range(0, length, chunk):
        stop = min(start + chunk, length)
        yield start, stop, max(0, start - margin), min(length, stop + margin)


@torch.inference_mode()
def encode_chunked(model: Any, video: torch.Tensor, tiling: Tiling = Tiling(), **kwargs: Any) -> EncoderOutput:
    """Encode [B, 3, T, H, W] chunk by chunk along time; T must be a multiple of the temporal factor."""
    tf, dtype = model.temporal_factor, model_dtype(model)
    margin = 0 if getattr(model, "encodes_frames_alone", False) else tiling.margin
    latents, tokens = [], []
    for start, stop, lo, hi in _spans(video.shape[2] // tf, tiling.chunk, margin):
        with autocast_like(model):
            out = model.encode(video[:, :, lo * tf : hi * tf].to(dtype), **kwargs)
        keep = slice(start - lo, stop - lo)
        latents.append(out.latents[:, :, keep].float())
        if out.tokens is not None:
            tokens.append(out.tokens[:, keep])
    return EncoderOutput(latents=torch.cat(latents, 2), tokens=torch.cat(tokens, 1) if tokens else None)


@torch.inference_mode()
def iter_decode(model: Any, latents: torch.Tensor, tiling: Tiling = Tiling(), **kwargs: Any) -> Iterator[torch.Tensor]:
    """Yield decoded video [B, 3, T_chunk, H, W] chunk by chunk, in order."""
    tf, dtype = model.temporal_factor, model_dtype(model)
    margin = 0 if getattr(model, "decodes_frames_alone", False) else tiling.margin
    for start, stop, lo, hi in _spans(latents.shape[2], tiling.chunk, margin):
        with autocast_like(model):
            video = _decode_tiled(model, latents[:, :, lo:hi].to(dtype), tiling, **kwargs)
        yield video[:, :, (start - lo) * tf : (stop - lo) * tf]


def decode_chunked(model: Any, latents: torch.Tensor, tiling: Tiling = Tiling(), **kwargs: Any) -> torch.Tensor:
    return torch.cat(list(iter_decode(model, latents, tiling, **kwargs)), 2)


def _decode_tiled(model: Any, latents: torch.Tensor, tiling: Tiling, **kwargs: Any) -> torch.Tensor:
    h, w = latents.shape[-2:]
    if tiling.tile is None or (h <= tiling.tile and w <= tiling.tile):
        return model.decode(latents, **kwargs).float()
    sf, step = model.spatial_factor, tiling.tile - tiling.overlap
    out = weight = None
    for y in _tile_starts(h, tiling.tile, step):
        for x in _tile_starts(w, tiling.tile, step):
            part = model.decode(latents[..., y : y + tiling.tile, x : x + tiling.tile], **kwargs).float()
            ramp = _ramp(part.shape[-2:], tiling.overlap * sf, y > 0, x > 0, y + tiling.tile < h, x + tiling.tile < w).to(part)
            if out is None:
                out = part.new_zeros(*part.shape[:3], h * sf, w * sf)
                weight = part.new_zeros(h * sf, w * sf)
            region = (..., slice(y * sf, y * sf + part.shape[-2]), slice(x * sf, x * sf + part.shape[-1]))
            out[region] += part * ramp
            weight[region[1:]] += ramp
    return out / weight


def _tile_starts(length: int, tile: int, step: int) -> list[int]:
    starts = list(range(0, max(length - tile, 0) + 1, step))
    if starts[-1] + tile < length:
        starts.append(length - tile)
    return starts


def _ramp(shape: torch.Size, width: int, top: bool, left: bool, bottom: bool, right: bool) -> torch.Tensor:
    """Blend weights: rising linearly over `width` pixels on the sides that overlap a neighbour."""
    def axis(n: int, rise: bool, fall: bool) -> torch.Tensor:
        w = torch.ones(n)
        ramp = (torch.arange(width) + 0.5) / width
        if rise and width:
            w[:width] = torch.minimum(w[:width], ramp)
        if fall and width:
            w[n - width :] = torch.minimum(w[n - width :], ramp.flip(0))
        return w

    return axis(shape[0], top, bottom)[:, None] * axis(shape[1], left, right)[None, :]
