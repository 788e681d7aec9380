"""Video input shared by the stages that take a clip: a media file/folder or a `video` tensor file."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class VideoInput:
    frames: np.ndarray  # uint8 [B, T, H, W, 3]
    fps: float
    parent: str  # digest of the input, for provenance
    prompt: str | None = None


def read_video_input(source: str, *, fps: float | None, size: int | None, frames: int | None) -> VideoInput:
    from vidtool import tensorfile, video
    from vidtool.errors import UserError

    if source == "-" or Path(source).suffix.lower() == ".safetensors":
        if fps or size:
            raise UserError("--fps/--size apply to media input; convert the video tensor file first or pass the mp4")
        tf = tensorfile.load(source, kinds=["video"])
        clip = tf.main.numpy()
        if frames:
            clip = clip[:, :frames]
        return VideoInput(clip, tf.fps or 8.0, tf.digest, tf.prompt)
    clip = video.read_video(source, fps=fps, size=size, max_frames=frames)
    path = Path(source)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else path.name
    return VideoInput(clip.frames[None], clip.fps, digest)
