"""The shapes probe: does a video show what its `shapes`-grammar prompt asks for?

The project's own prompt-alignment check for generators trained on the procedural shapes data
(`vidtool.data.shapes`). It reads a video without any learned model:

1. colour: every pixel is labelled with the nearest colour of the shapes palette (`COLORS`) when it
   lies within `COLOR_RADIUS` of it. The background is the label most common on the frame border
   (a plain dark background has none); of the other colours, the one covering most pixels over the
   whole clip is the dominant shape's — the caption's shape is the larger, frontmost one.
2. shape: in each frame the largest 8-connected blob of that colour; its area over its bounding
   box area ("fill") is about π/4 for a circle, 1 for a square and 1/2 for a triangle (whose base
   and apex touch the box). The median fill over frames picks the nearest of the three.
3. direction: the blob's centroid is tracked; the axis and sign of its net displacement give
   left/right/up/down (y grows downwards, as in the renderer).

Each reading is scored against the prompt parsed with the caption grammar (`CAPTION_RE`): colour
hit, shape hit, direction hit, and all three. A video where no colour blob is found scores a miss
on every count, so a model that draws nothing cannot look aligned.

Reconstruction mode compares the reading of a decoded round trip with the reading of its source
clip (agreement on colour, shape and direction) instead of with a prompt.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vidtool.data.shapes import CAPTION_RE, COLORS, DIRECTIONS, SHAPES

COLOR_NAMES = tuple(COLORS)
PALETTE = np.asarray(list(COLORS.values()), dtype=np.float32)  # [8, 3]
# Half the smallest distance between two palette colours (yellow-orange, 92.7), so a pixel is
# never within reach of two colours; video compression moves flat interiors by far less.
COLOR_RADIUS = 45.0
# Bounding-box fill of each shape drawn by the renderer: circle π/4, axis-aligned square 1,
# apex-up triangle 1/2.
FILL = {"circle": math.pi / 4, "square": 1.0, "triangle": 0.5}
MIN_BLOB_FRACTION = 0.003  # of the frame: ~12 px at 64x64; the smallest distractor is ~45 px
MIN_FRAMES_FRACTION = 0.5  # the blob must be found in at least half the frames
MIN_TRAVEL_FRACTION = 0.05  # net displacement below this share of the frame side: no direction


@dataclass(frozen=True)
class Reading:
    found: bool
    color: str | None
    shape: str | None
    direction: str | None
    fill: float  # median bounding-box fill; nan when not found
    track: np.ndarray  # [T, 2] blob centroid (x, y) in pixels; nan where absent

    def as_indices(self) -> np.ndarray:
        """(found, colour, shape, direction) as integers, -1 for none: the form shard files store."""
        return np.array([int(self.found), _index(COLOR_NAMES, self.color), _index(SHAPES, self.shape),
                         _index(DIRECTIONS, self.direction)], dtype=np.int64)


def _index(names, value) -> int:
    return names.index(value) if value is not None else -1


def parse_prompt(prompt: str | None) -> tuple[str, str, str] | None:
    """(colour, shape, direction) of a shapes-grammar prompt; None when it does not follow it."""
    match = CAPTION_RE.search(prompt.strip().lower()) if prompt else None
    return (match["color"], match["shape"], match["direction"]) if match else None


def color_labels(frames: np.ndarray) -> np.ndarray:
    """Palette index of each pixel within COLOR_RADIUS of a palette colour, else -1 -> int8 [T, H, W]."""
    x = frames.reshape(-1, 3).astype(np.float32)
    # |x - p|² = |x|² - 2 x·p + |p|², as one matrix product instead of an [N, 8, 3] difference array
    squared = (x * x).sum(1, keepdims=True) - 2 * x @ PALETTE.T + (PALETTE * PALETTE).sum(1)
    nearest = squared.argmin(1)
    close = squared[np.arange(len(x)), nearest] <= COLOR_RADIUS**2
    return np.where(close, nearest, -1).astype(np.int8).reshape(frames.shape[:-1])


def _background(labels: np.ndarray) -> int:
    border = np.concatenate([labels[:, 0, :], labels[:, -1, :], labels[:, :, 0], labels[:, :, -1]], axis=1)
    values, counts = np.unique(border, return_counts=True)
    return int(values[counts.argmax()])


def _largest_blob(mask: np.ndarray, min_area: int) -> tuple[float, float, float] | None:
    """(centroid x, centroid y, bounding-box fill) of the largest 8-connected blob, if big enough."""
    import cv2

    count, _, stats, centroids = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count < 2:
        return None
    best = 1 + int(stats[1:, cv2.CC_STAT_AREA].argmax())
    area = stats[best, cv2.CC_STAT_AREA]
    if area < min_area:
        return None
    box = stats[best, cv2.CC_STAT_WIDTH] * stats[best, cv2.CC_STAT_HEIGHT]
    return float(centroids[best, 0]), float(centroids[best, 1]), float(area / box)


def read_clip(frames: np.ndarray) -> Reading:
    """What a uint8 clip [T, H, W, 3] shows: dominant colour, shape and direction."""
    t, h, w, _ = frames.shape
    labels = color_labels(frames)
    background = _background(labels)
    counts = np.bincount(labels[labels >= 0].ravel().astype(np.int64), minlength=len(PALETTE))
    if background >= 0:
        counts[background] = 0
    min_area = max(4, int(MIN_BLOB_FRACTION * h * w))
    track = np.full((t, 2), np.nan)
    if counts.max() < min_area:
        return Reading(False, None, None, None, math.nan, track)
    color = int(counts.argmax())
    fills = []
    for i in range(t):
        blob = _largest_blob(labels[i] == color, min_area)
        if blob is not None:
            track[i] = blob[:2]
            fills.append(blob[2])
    if len(fills) < MIN_FRAMES_FRACTION * t:
        return Reading(False, None, None, None, math.nan, track)
    fill = float(np.median(fills))
    shape = min(FILL, key=lambda s: abs(FILL[s] - fill))
    return Reading(True, COLOR_NAMES[color], shape, _direction(track, min(h, w)), fill, track)


def _direction(track: np.ndarray, side: int) -> str | None:
    seen = track[~np.isnan(track[:, 0])]
    dx, dy = seen[-1] - seen[0]
    if math.hypot(dx, dy) < MIN_TRAVEL_FRACTION * side:
        return None
    if abs(dx) >= abs(dy):
        return "right" if dx > 0 else "left"
    return "down" if dy > 0 else "up"


# "color+direction" is the prompt-alignment goal of the text-to-video issues: the dominant shape has
# the prompt's colour and moves the prompt's way (its outline aside).
HIT_NAMES = ("color", "shape", "direction", "color+direction", "all")


def hits(reading: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Colour, shape, direction, colour-and-direction and all-three hits of readings [N, 4]
    (as_indices) against targets [N, 3] (colour, shape, direction indices; -1 = unknown, never a
    hit) -> bool [N, 5]."""
    found = reading[:, 0] == 1
    each = found[:, None] & (reading[:, 1:] == target) & (target >= 0)
    both = each[:, [0, 2]].all(axis=1, keepdims=True)
    return np.concatenate([each, both, each.all(axis=1, keepdims=True)], axis=1)


def prompt_target(prompt: str | None) -> np.ndarray:
    parsed = parse_prompt(prompt)
    if parsed is None:
        return np.full(3, -1, dtype=np.int64)
    color, shape, direction = parsed
    return np.array([COLOR_NAMES.index(color), SHAPES.index(shape), DIRECTIONS.index(direction)], dtype=np.int64)
