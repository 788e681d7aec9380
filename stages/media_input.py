"""Video input shared by the stages that take a clip: a media file/folder or a `video` tensor file."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class VideoInput:
    frames: np.ndarray  # uint8 [B, T, H, W, 3]
    fps: float
    parent: str  # digest of the input, for provenance
    prompt: str | None = None


def read_video_input(source: str, *, fps: float | None, size: int | None, frames: int | None,
                     crop: str | None = None, multiple: int = 1, max_memory: str | None = None) -> VideoInput:
    """The clip at its own size, or with `size` its short side resized to `size` (aspect kept, each
    side rounded to a multiple of `multiple`, the model's spatial factor), then centre-cropped to
    `crop` ("N" or "HxW") if given. Media is scaled down while it is decoded and refused over
    `max_memory` (--max-memory; default half the available RAM), see `vidtool.video.read_video`."""
    from vidtool import tensorfile, video
    from vidtool.budget import parse_memory
    from vidtool.errors import UserError

    if source == "-" or Path(source).suffix.lower() == ".safetensors":
        if fps or size or crop:
            raise UserError("--fps/--size/--crop apply to media input; convert the video tensor file first or pass "
                            "the mp4")
        tf = tensorfile.load(source, kinds=["video"])
        clip = tf.main.numpy()
        if frames:
            clip = clip[:, :frames]
        return VideoInput(clip, tf.fps or 8.0, tf.digest, tf.prompt)
    clip = video.read_video(source, fps=fps, max_frames=frames, shrink_for=size,
                            max_memory=parse_memory(max_memory) if max_memory else None)
    path = Path(source)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else path.name
    return VideoInput(fit_frames(clip.frames, size=size, crop=crop, multiple=multiple)[None], clip.fps, digest)


def fit_frames(frames: np.ndarray, *, size: int | None, crop: str | None, multiple: int = 1) -> np.ndarray:
    """uint8 [T, H, W, 3] → `--size` (short side, aspect kept), then `--crop`; one stderr line says
    when rounding to multiples of `multiple` changed the size --size asked for."""
    from stages.context import console
    from vidtool import video

    if size is not None:
        h, w = frames.shape[1:3]
        exact, shape = video.short_side_shape(h, w, size), video.short_side_shape(h, w, size, multiple)
        if shape != exact:
            console().print(f"[yellow]--size {size}: {h}×{w} → {shape[0]}×{shape[1]} instead of {exact[0]}×{exact[1]} "
                            f"(sides rounded to multiples of the model's spatial factor {multiple})[/]", soft_wrap=True)
        frames = video.cover_and_crop(frames, shape)
    if crop is not None:
        frames = video.centre_crop(frames, parse_crop(crop))
    return frames


def parse_crop(text: str) -> tuple[int, int]:
    """`--crop` "64" → (64, 64); "48x80" → (48, 80) (height x width)."""
    from vidtool.errors import UserError

    found = re.fullmatch(r"\s*(\d+)\s*(?:[x×]\s*(\d+))?\s*", text)
    if not found or int(found[1]) < 1 or (found[2] is not None and int(found[2]) < 1):
        raise UserError(f"--crop takes N or HxW in pixels (e.g. 64 or 48x80), got {text!r}")
    height = int(found[1])
    return height, int(found[2]) if found[2] is not None else height
