"""A large synthetic clip (ffmpeg's testsrc, H.264) and a recorder of the sizes decord is asked to
decode at: what the stages that only look at small frames (score, recaption, evaluate) are tested with."""

from __future__ import annotations

import subprocess
from pathlib import Path

SIDE = 2000  # a decoded frame is 12 MB of RGB; the stages under test need a few hundred pixels a side


def large_clip(path: Path, frames: int = 16, side: int = SIDE) -> Path:
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc=s={side}x{side}:r=8",
                    "-frames:v", str(frames), "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
                    str(path)], check=True)
    return path


def record_decodes(monkeypatch) -> list[tuple[int, int]]:
    """The (height, width) every decord.VideoReader opened from now on decodes at (the clip's own
    size where no scaling was asked for)."""
    import decord

    opened: list[tuple[int, int]] = []
    real = decord.VideoReader

    def recording(*args, **kwargs):
        reader = real(*args, **kwargs)
        height, width = reader[0].shape[:2] if len(reader) else (0, 0)
        opened.append((int(height), int(width)))
        return reader

    monkeypatch.setattr(decord, "VideoReader", recording)
    return opened
