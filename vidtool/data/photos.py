"""`photos` clips: a virtual camera panning, zooming or rotating over scikit-image's bundled photographs.

Only images that ship inside the scikit-image wheel are used (the others need a download through
pooch, and dataset making must work offline). Captions name the motion and the image, e.g.
"slow zoom into a photo of a cat", "pan left across a photo of a rocket".

"Pan left" follows the film convention: the camera turns left, so the picture slides right.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from PIL import Image

# skimage.data loader -> what the caption calls it. `cat` is the same picture as `chelsea`, and
# `logo` is a drawing, so neither is here.
IMAGES = {
    "astronaut": "an astronaut",
    "chelsea": "a cat",
    "coffee": "coffee",
    "rocket": "a rocket",
    "hubble_deep_field": "the hubble deep field",
    "immunohistochemistry": "stained tissue",
    "retina": "a retina",
    "colorwheel": "a color wheel",
    "stereo_motorcycle": "a motorcycle",
}
MOTIONS = ("zoom-in", "zoom-out", "pan-left", "pan-right", "pan-up", "pan-down", "rotate-cw", "rotate-ccw")
PHRASES = {
    "zoom-in": "zoom into",
    "zoom-out": "zoom out of",
    "pan-left": "pan left across",
    "pan-right": "pan right across",
    "pan-up": "pan up across",
    "pan-down": "pan down across",
    "rotate-cw": "clockwise rotation of",
    "rotate-ccw": "counterclockwise rotation of",
}
SPEEDS = ("slow", "medium", "fast")
# Per-clip amount of motion for each speed; pans in units of the image's short side.
PAN = {"slow": 0.12, "medium": 0.22, "fast": 0.34}
ZOOM = {"slow": 1.25, "medium": 1.6, "fast": 2.0}
ROTATION_DEGREES = {"slow": 20.0, "medium": 45.0, "fast": 90.0}
# The camera's square window, as a fraction of the short side; below 1/sqrt(2) so a rotated
# window's corners never leave the picture.
WINDOW = 0.62
# The source is resized so the window spans about this many output pixels: enough detail for
# zooms, and little enough minification that bilinear sampling does not alias.
SOURCE_OVERSAMPLE = 1.25


@dataclass(frozen=True)
class PhotoClip:
    """A camera path in units of the image's short side, relative to the image centre (y down)."""

    image: str
    motion: str
    speed: str  # "slow", "medium" or "fast"
    caption: str
    center_start: tuple[float, float]
    center_end: tuple[float, float]
    window_start: float
    window_end: float
    angle_start: float  # degrees the window turns counterclockwise, so the picture turns clockwise
    angle_end: float


def sample_photo_clip(seed: int, index: int) -> PhotoClip:
    """The clip at `index`: its own generator seeded from (seed, index), so any subset is reproducible."""
    rng = np.random.default_rng([seed, index])
    image = str(rng.choice(list(IMAGES)))
    motion = str(rng.choice(MOTIONS))
    speed = str(rng.choice(SPEEDS))
    height, width = _original(image).shape[:2]
    short = min(height, width)
    # How far the window centre may sit from the image centre, per axis, before it leaves the picture.
    room = np.array([width / short - WINDOW, height / short - WINDOW]) / 2

    center = rng.uniform(-1, 1, 2) * room * 0.5
    center_start = center_end = center
    window_start = window_end = WINDOW
    angle_start = angle_end = 0.0

    if motion.startswith("pan"):
        axis = 0 if motion in ("pan-left", "pan-right") else 1
        travel = min(PAN[speed], 2 * room[axis])
        # The camera moves in the named direction: left and up are negative x and y.
        sign = -1 if motion in ("pan-left", "pan-up") else 1
        center_start = center.copy()
        center_end = center.copy()
        center_start[axis] = -sign * travel / 2
        center_end[axis] = sign * travel / 2
    elif motion.startswith("zoom"):
        window_start, window_end = WINDOW, WINDOW / ZOOM[speed]
        if motion == "zoom-out":
            window_start, window_end = window_end, window_start
    else:
        # The rotating window sweeps a circle of radius WINDOW/sqrt(2); keep that circle inside.
        slack = np.maximum(np.array([width, height]) / short / 2 - WINDOW / np.sqrt(2), 0)
        center_start = center_end = rng.uniform(-1, 1, 2) * slack
        angle_start = float(rng.uniform(-15, 15))
        turn = ROTATION_DEGREES[speed] * (1 if motion == "rotate-cw" else -1)
        angle_end = angle_start + turn

    pace = {"slow": "slow ", "fast": "fast ", "medium": ""}[speed]
    caption = f"{pace}{PHRASES[motion]} a photo of {IMAGES[image]}"
    return PhotoClip(
        image,
        motion,
        speed,
        caption,
        tuple(map(float, center_start)),
        tuple(map(float, center_end)),
        float(window_start),
        float(window_end),
        float(angle_start),
        float(angle_end),
    )


def render_photo_clip(clip: PhotoClip, *, frames: int, size: int) -> np.ndarray:
    """uint8 [T,size,size,3]: each frame an affine sampling grid over the photo, bilinear."""
    source = _source(clip.image, size)
    height, width = source.shape[:2]
    short = min(height, width)
    t = np.linspace(0.0, 1.0, frames) if frames > 1 else np.zeros(1)

    start, end = np.asarray(clip.center_start), np.asarray(clip.center_end)
    centers = start + (end - start) * t[:, None]
    # Zoom geometrically, so the apparent speed is constant rather than fast at first.
    windows = clip.window_start * (clip.window_end / clip.window_start) ** t
    angles = np.deg2rad(clip.angle_start + (clip.angle_end - clip.angle_start) * t)

    grid = (np.arange(size) + 0.5) / size - 0.5  # output pixel centres in [-0.5, 0.5]
    u, v = np.meshgrid(grid, grid)  # [size,size] each, u across, v down
    scale = (windows * short)[:, None, None]
    cos, sin = np.cos(angles)[:, None, None], np.sin(angles)[:, None, None]
    # Rotating the window counterclockwise on screen turns the picture clockwise in the frame.
    x = width / 2 + centers[:, 0, None, None] * short + scale * (cos * u + sin * v)
    y = height / 2 + centers[:, 1, None, None] * short + scale * (-sin * u + cos * v)
    return _bilinear(source, x - 0.5, y - 0.5)


def _bilinear(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Sample `image` [H,W,3] at pixel coordinates (x, y) of any shape, clamping at the border."""
    height, width = image.shape[:2]
    x = np.clip(x, 0, width - 1)
    y = np.clip(y, 0, height - 1)
    x0 = np.minimum(x.astype(np.int64), width - 2)
    y0 = np.minimum(y.astype(np.int64), height - 2)
    fx = (x - x0)[..., None].astype(np.float32)
    fy = (y - y0)[..., None].astype(np.float32)
    img = image.astype(np.float32)
    top = img[y0, x0] * (1 - fx) + img[y0, x0 + 1] * fx
    bottom = img[y0 + 1, x0] * (1 - fx) + img[y0 + 1, x0 + 1] * fx
    return np.clip(np.rint(top * (1 - fy) + bottom * fy), 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=None)
def _original(name: str) -> np.ndarray:
    import skimage.data

    image = getattr(skimage.data, name)()
    if name == "stereo_motorcycle":
        image = image[0]  # the left view of the stereo pair
    return image[..., :3]


@functools.lru_cache(maxsize=32)
def _source(name: str, size: int) -> np.ndarray:
    """The photo resized once per output size, with Pillow's filtered (anti-aliased) reduction."""
    image = _original(name)
    height, width = image.shape[:2]
    factor = SOURCE_OVERSAMPLE * size / (WINDOW * min(height, width))
    new = (max(2, round(width * factor)), max(2, round(height * factor)))
    return np.asarray(Image.fromarray(image).resize(new, Image.LANCZOS))
