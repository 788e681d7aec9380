"""Procedural `shapes` videos: coloured circles, squares and triangles sliding across the frame.

Captions follow one grammar (`CAPTION_RE`):

    a {color} {shape} moving {direction}[ quickly| slowly][ on a {bgcolor} background]

with "an" for "a" before a colour that starts with a vowel ("an orange circle ... on an orange background").

The caption describes the primary (larger, frontmost) shape; a second, smaller shape may wander
behind it as a distractor. Some (color, shape, direction) combinations are held out of training
(`HELD_OUT`) so evaluation can ask whether a model composes attributes it saw only apart.

A clip is first sampled as a `ShapeClip` (cheap: a few random numbers) and then rendered; the
split lets a rerun rebuild the manifest without rendering clips that already exist.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

import numpy as np
from PIL import Image

from vidtool.data.wording import with_article
from vidtool.errors import UserError

COLORS = {
    "red": (230, 25, 25),
    "green": (25, 200, 45),
    "blue": (30, 60, 240),
    "yellow": (245, 225, 20),
    "magenta": (225, 30, 225),
    "cyan": (30, 225, 235),
    "white": (245, 245, 245),
    "orange": (255, 135, 0),
}
SHAPES = ("circle", "square", "triangle")
DIRECTIONS = ("left", "right", "up", "down")
HELD_OUT = (
    ("blue", "triangle", "up"),
    ("red", "square", "left"),
    ("yellow", "circle", "down"),
    ("green", "triangle", "right"),
)
CAPTION_RE = re.compile(
    rf"an? (?P<color>{'|'.join(COLORS)}) (?P<shape>{'|'.join(SHAPES)})"
    rf" moving (?P<direction>{'|'.join(DIRECTIONS)})"
    rf"(?: (?P<speed>quickly|slowly))?(?: on an? (?P<background>{'|'.join(COLORS)}) background)?"
)

# Travel over the whole clip, as a fraction of the frame side. The gaps between the speed-word
# thresholds and the range ends keep "quickly" and "slowly" for clearly fast or slow motion.
TRAVEL_RANGE = (0.15, 0.6)
SLOW_BELOW, FAST_ABOVE = 0.25, 0.5
PRIMARY_RADIUS = (0.12, 0.2)
SECONDARY_RADIUS = (0.06, 0.1)
SUPERSAMPLE = 2


@dataclass(frozen=True)
class Sprite:
    """One shape's path; positions and radius are fractions of the frame side, y pointing down."""

    shape: str
    color: str
    radius: float
    start: tuple[float, float]
    end: tuple[float, float]


@dataclass(frozen=True)
class ShapeClip:
    """Everything needed to render one clip and to describe it; independent of frame count and size."""

    color: str
    shape: str
    direction: str
    speed: str  # "slow", "medium" or "fast"
    caption: str
    sprites: tuple[Sprite, ...]  # drawn in order, so the primary shape comes last and is never hidden
    background: str | None  # a color name, or None for an unnamed dark grey
    background_rgb: tuple[int, int, int]
    texture_seed: int | None  # None: a plain background


@dataclass(frozen=True)
class ShapeFrames:
    video: np.ndarray  # uint8 [T,H,W,3]
    mask: np.ndarray  # uint8 [T,H,W], 1 where the primary shape covers at least half a pixel
    sketch: np.ndarray  # uint8 [T,H,W], 1 on the mask's inner boundary (1 px)


def combinations(held_out=HELD_OUT, only_held_out: bool = False) -> list[tuple[str, str, str]]:
    """The (color, shape, direction) triples a generator may draw from."""
    held_out = [tuple(combo) for combo in held_out]
    for combo in held_out:
        if len(combo) != 3 or combo[0] not in COLORS or combo[1] not in SHAPES or combo[2] not in DIRECTIONS:
            raise UserError(
                f"held-out combination {combo!r} is not (color, shape, direction) with color in "
                f"{sorted(COLORS)}, shape in {list(SHAPES)}, direction in {list(DIRECTIONS)}"
            )
    if only_held_out:
        if not held_out:
            raise UserError("only_held_out needs at least one held-out combination")
        return list(dict.fromkeys(held_out))
    excluded = set(held_out)
    allowed = [c for c in itertools.product(COLORS, SHAPES, DIRECTIONS) if c not in excluded]
    if not allowed:
        raise UserError("every combination is held out; nothing is left to generate")
    return allowed


def sample_shape_clip(seed: int, index: int, combos: list[tuple[str, str, str]]) -> ShapeClip:
    """The clip at `index`: its own generator seeded from (seed, index), so any subset is reproducible."""
    rng = np.random.default_rng([seed, index])
    color, shape, direction = combos[rng.integers(len(combos))]
    travel = rng.uniform(*TRAVEL_RANGE)
    speed = "slow" if travel < SLOW_BELOW else "fast" if travel > FAST_ABOVE else "medium"
    primary = _sprite(rng, shape, color, direction, travel, PRIMARY_RADIUS)

    sprites = (primary,)
    taken = {color}
    if rng.random() < 0.5:
        other = str(rng.choice([c for c in COLORS if c != color]))
        taken.add(other)
        second = _sprite(
            rng,
            str(rng.choice(SHAPES)),
            other,
            str(rng.choice(DIRECTIONS)),
            rng.uniform(*TRAVEL_RANGE),
            SECONDARY_RADIUS,
        )
        sprites = (second, primary)

    if rng.random() < 0.5:
        background = None
        background_rgb = (int(rng.integers(0, 40)),) * 3
    else:
        background = str(rng.choice([c for c in COLORS if c not in taken]))
        background_rgb = COLORS[background]
    texture_seed = int(rng.integers(2**31)) if rng.random() < 0.5 else None

    caption = f"{with_article(color)} {shape} moving {direction}"
    caption += {"slow": " slowly", "fast": " quickly", "medium": ""}[speed]
    if background is not None:
        caption += f" on {with_article(background)} background"
    return ShapeClip(
        color, shape, direction, speed, caption, sprites, background, background_rgb, texture_seed
    )


def _sprite(rng, shape, color, direction, travel, radius_range) -> Sprite:
    radius = rng.uniform(*radius_range)
    # Start far enough from the edge that the shape stays whole for the entire path.
    along = rng.uniform(radius, 1 - radius - travel)
    across = rng.uniform(radius, 1 - radius)
    sign = 1 if direction in ("right", "down") else -1
    if sign < 0:
        along = 1 - along
    a0, a1 = along, along + sign * travel
    if direction in ("left", "right"):
        start, end = (a0, across), (a1, across)
    else:
        start, end = (across, a0), (across, a1)
    return Sprite(shape, color, float(radius), tuple(map(float, start)), tuple(map(float, end)))


def render_shape_clip(clip: ShapeClip, *, frames: int, size: int) -> ShapeFrames:
    """Draw the clip with 2x supersampling, so edges are anti-aliased rather than stair-stepped."""
    fine = size * SUPERSAMPLE
    axis = (np.arange(fine, dtype=np.float32) + 0.5) / fine
    x, y = axis[None, None, :], axis[None, :, None]
    progress = np.linspace(0.0, 1.0, frames, dtype=np.float32) if frames > 1 else np.zeros(1, np.float32)

    canvas = np.broadcast_to(_background(clip, size), (frames, size, size, 3)).astype(np.float32)
    for sprite in clip.sprites:
        start, end = np.asarray(sprite.start, np.float32), np.asarray(sprite.end, np.float32)
        centers = start + (end - start) * progress[:, None]
        dx, dy = x - centers[:, 0, None, None], y - centers[:, 1, None, None]
        inside = _inside(sprite.shape, dx, dy, sprite.radius)
        coverage = inside.reshape(frames, size, SUPERSAMPLE, size, SUPERSAMPLE).mean(axis=(2, 4), dtype=np.float32)
        alpha = coverage[..., None]
        canvas = canvas * (1 - alpha) + np.asarray(COLORS[sprite.color], np.float32) * alpha

    mask = coverage >= 0.5  # the last sprite drawn is the primary one
    return ShapeFrames(
        video=np.clip(np.rint(canvas), 0, 255).astype(np.uint8),
        mask=mask.astype(np.uint8),
        sketch=(mask & ~_erode(mask)).astype(np.uint8),
    )


def _inside(shape: str, dx: np.ndarray, dy: np.ndarray, radius: float) -> np.ndarray:
    if shape == "circle":
        return dx * dx + dy * dy <= radius * radius
    if shape == "square":
        half = radius * 0.9  # about the circle's area, so shape is not confounded with size
        return (np.abs(dx) <= half) & (np.abs(dy) <= half)
    if shape == "triangle":
        # Equilateral, apex up, centroid at the centre: inside all three edges, whose outward
        # normals are (0, 1), (+-sqrt(3)/2, -1/2) with y down, at the inradius (half the circumradius).
        inradius = radius * 1.25 / 2  # enlarged so its area is closer to the circle's
        s = np.float32(np.sqrt(3) / 2)
        return (dy <= inradius) & (s * dx - 0.5 * dy <= inradius) & (-s * dx - 0.5 * dy <= inradius)
    raise ValueError(f"unknown shape {shape!r}")


def _background(clip: ShapeClip, size: int) -> np.ndarray:
    base = np.asarray(clip.background_rgb, np.float32)
    if clip.texture_seed is None:
        return base
    # Smooth low-frequency noise of about +-14 levels: texture that does not compete with the shapes.
    noise = np.random.default_rng(clip.texture_seed).uniform(-1, 1, (5, 5)).astype(np.float32)
    smooth = np.asarray(Image.fromarray(noise, mode="F").resize((size, size), Image.BILINEAR))
    return np.clip(base + 14 * smooth[..., None], 0, 255)


def _erode(mask: np.ndarray) -> np.ndarray:
    """4-neighbour erosion of [T,H,W] masks; pixels outside the frame count as background."""
    padded = np.pad(mask, ((0, 0), (1, 1), (1, 1)))
    return (
        padded[:, 1:-1, 1:-1]
        & padded[:, :-2, 1:-1]
        & padded[:, 2:, 1:-1]
        & padded[:, 1:-1, :-2]
        & padded[:, 1:-1, 2:]
    )
