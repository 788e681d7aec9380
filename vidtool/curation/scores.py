"""Per-clip quality columns for `vidtool score`, measured with OpenCV on a few frames of each clip.

The columns, and the frames they look at (`pairs` positions spread evenly over the clip, each a
frame and the one after it, every frame resized so its short side is `size` pixels first, which makes
the numbers comparable between clips of any resolution):

- `motion`: mean optical-flow magnitude (OpenCV Farneback) over the pairs, in pixels per frame at a
  short side of `MOTION_SIZE` (128): about 0 for a still shot, 1-3 for a steady pan. Flow at this
  coarse scale follows the scene rather than sensor noise.
- `sharpness`: median variance of the Laplacian of the grey frames (8-bit levels squared); blur
  removes the high frequencies it measures (the classic focus measure of Pech-Pacheco et al. 2000).
- `brightness`: mean luma (BT.601 grey, 0-255).
- `phash`: perceptual hash (imagehash's pHash, 64 bits as 16 hex digits) of the middle frame; two
  clips whose hashes differ in few bits look alike (`vidtool filter --dedup`).
- `text_area`: fraction of the frame covered by text lines: see `text_mask`, or, with a detection
  model (`vidtool.curation.text_detect`), the mean share of its boxes.

MotionAura App. C.3 and Open-Sora's data pipeline drop clips by such measures (static, blurred,
dark, duplicated, covered in captions or watermarks) before training.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MOTION_SIZE = 128
# Structures thinner than this (at a short side of `size`) count as strokes: letters' lines are.
STROKE_KERNEL = 9
# A stroke is at least this many 8-bit levels brighter or darker than its surroundings: burned-in
# captions and watermarks are drawn to be read, with a contrast natural texture rarely keeps.
STROKE_CONTRAST = 70


@dataclass(frozen=True)
class ScoreOptions:
    pairs: int = 4  # frame pairs per clip
    size: int = 256  # short side the frames are resized to for sharpness, brightness and text


def resize_short(frame: np.ndarray, short: int) -> np.ndarray:
    import cv2

    h, w = frame.shape[:2]
    scale = short / min(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


def grey(frame: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


def pair_indices(frames: int, pairs: int) -> np.ndarray:
    """The first frame of each pair: evenly spread from the first to the last-but-one frame."""
    if frames < 2:
        return np.zeros(1, dtype=np.int64)
    return np.unique(np.round(np.linspace(0, frames - 2, pairs)).astype(np.int64))


def motion(first: list[np.ndarray], second: list[np.ndarray]) -> float:
    """Mean Farneback flow magnitude in pixels per frame at a short side of MOTION_SIZE."""
    import cv2

    magnitudes = []
    for a, b in zip(first, second):
        a, b = grey(resize_short(a, MOTION_SIZE)), grey(resize_short(b, MOTION_SIZE))
        # pyramid scale 0.5, 3 levels, window 15, 3 iterations, 5-pixel polynomial, sigma 1.2: OpenCV's
        # documented example settings.
        flow = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)
        magnitudes.append(float(np.linalg.norm(flow, axis=-1).mean()))
    return float(np.mean(magnitudes))


def sharpness(greys: list[np.ndarray]) -> float:
    import cv2

    return float(np.median([cv2.Laplacian(g, cv2.CV_64F).var() for g in greys]))


def brightness(greys: list[np.ndarray]) -> float:
    return float(np.mean([g.mean() for g in greys]))


def phash(frame: np.ndarray) -> str:
    import imagehash
    from PIL import Image

    return str(imagehash.phash(Image.fromarray(frame)))


def hash_distance(a: str, b: str) -> int:
    """Bits in which two hex hashes differ (Hamming distance)."""
    return bin(int(a, 16) ^ int(b, 16)).count("1")


def text_area(greys: list[np.ndarray]) -> float:
    """Fraction of the frame covered by text lines that stay put across the sampled frames (`text_mask`)."""
    return float(text_mask(greys).mean())


def text_mask(greys: list[np.ndarray]) -> np.ndarray:
    """bool [H,W]: where text lines stay put across the grey frames `greys` (all of one size).

    Classical, no model: strokes are thin structures of high contrast (morphological top-hat and
    black-hat with a STROKE_KERNEL square, over STROKE_CONTRAST levels); only strokes present in every
    sampled frame are kept, because burned-in captions and watermarks stay where they are while the
    scene behind them moves (a still shot keeps all its strokes and relies on the next test alone);
    strokes are then joined along rows into lines, and a line counts as text when it is at least
    twice as wide as tall, 6 px to a sixth of the frame high, and 15-90% strokes inside its box.
    """
    import cv2

    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (STROKE_KERNEL, STROKE_KERNEL))
    strokes = [np.maximum(cv2.morphologyEx(g, cv2.MORPH_TOPHAT, kernel), cv2.morphologyEx(g, cv2.MORPH_BLACKHAT, kernel))
               > STROKE_CONTRAST for g in greys]
    steady = np.logical_and.reduce(strokes).astype(np.uint8)
    lines = cv2.morphologyEx(steady, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (11, 1)))
    lines = cv2.dilate(lines, cv2.getStructuringElement(cv2.MORPH_RECT, (1, 3)))
    count, _, boxes, _ = cv2.connectedComponentsWithStats(lines, connectivity=8)
    height, width = steady.shape
    covered = np.zeros(steady.shape, dtype=bool)
    for x, y, w, h, _ in boxes[1:]:
        density = steady[y : y + h, x : x + w].mean()
        if w >= 2 * h and 6 <= h <= height // 6 and 0.15 <= density <= 0.9:
            covered[y : y + h, x : x + w] = True
    return covered


def score_frames(first: np.ndarray, second: np.ndarray, middle: np.ndarray, options: ScoreOptions) -> dict:
    """The columns of one clip from its frame pairs (uint8 [P,H,W,3] each) and its middle frame."""
    greys = [grey(resize_short(frame, options.size)) for frame in first]
    return {"motion": round(motion(list(first), list(second)), 4), "sharpness": round(sharpness(greys), 2),
            "brightness": round(brightness(greys), 2), "phash": phash(middle), "text_area": round(text_area(greys), 4)}


def read_side(options: ScoreOptions, aesthetic=None) -> int:
    """The short side every measurement resizes to at most (sharpness/brightness/text at `size`,
    motion at MOTION_SIZE, the aesthetic CLIP at its input size; the pHash at 32): a clip is decoded
    no larger than about twice that (vidtool.video shrinks while decoding), so a 4K clip is never
    held at its own size."""
    return max(options.size, MOTION_SIZE, int(aesthetic.clip.size) if aesthetic is not None else 0)


def score_clip(path: str | os.PathLike, options: ScoreOptions, fps: float | None = None, aesthetic=None,
               text_detector=None) -> dict:
    """`score_frames` of a clip file or frame folder, decoding only the frames it needs; with
    `aesthetic` (a `vidtool.curation.aesthetic.AestheticScorer`) also its `aesthetic` column; with
    `text_detector` (a `vidtool.curation.text_detect.TextDetector`) `text_area` is that model's."""
    from vidtool.video import read_frames

    def wanted(frames: int) -> np.ndarray:
        starts = pair_indices(frames, options.pairs)
        return np.concatenate([starts, np.minimum(starts + 1, frames - 1), [frames // 2]])

    frames = read_frames(Path(path), wanted, fps=fps, shrink_for=read_side(options, aesthetic)).frames
    count = (len(frames) - 1) // 2
    columns = score_frames(frames[:count], frames[count : 2 * count], frames[-1], options)
    if aesthetic is not None:
        columns["aesthetic"] = round(aesthetic(frames[:count]), 4)
    if text_detector is not None:
        columns["text_area"] = round(text_detector.area(frames[:count]), 4)
    return columns
