"""`scenes` clips: layered moving pictures that behave like camera footage, for autoencoders that must
work on natural video and not only on pans over one still.

A scene is a background layer and up to three foreground layers, composited back to front:

- each layer shows a picture (a photograph scikit-image ships, a tinted greyscale one, or a
  procedural 1/f texture with hard-edged regions) through its own moving camera window (pan, zoom,
  rotation, handheld jitter), optionally out of focus;
- a foreground layer is a soft-edged blob (a rotated superellipse) that travels, grows or shrinks
  across the frame on its own path, occluding the layers behind it and being occluded in turn;
- the whole frame goes through a lighting change (gain and colour-temperature ramps) and sensor
  noise, as a camera's auto-exposure and sensor would add.

`HELD_OUT_IMAGES` never appear in a scene: they make the natural test footage
(`natural_test_clips`, used by benchmarks/natural_footage.py), so a reconstruction number on it is
measured on pictures the autoencoder never saw.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from vidtool.data.photos import _bilinear

# Photographs (colour) and greyscale pictures that ship inside the scikit-image wheel.
COLOR = ("chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina", "colorwheel",
         "stereo_motorcycle", "stereo_motorcycle_right")
GRAY = ("coins", "moon", "page", "text", "grass", "gravel", "brick", "cell", "clock")
HELD_OUT_IMAGES = ("astronaut", "coffee", "camera")
TEXTURES = 64  # procedural textures: seeds 0..63, cached once each
NOUNS = {"chelsea": "a cat", "rocket": "a rocket", "hubble_deep_field": "galaxies", "immunohistochemistry": "tissue",
         "retina": "a retina", "colorwheel": "a colour wheel", "stereo_motorcycle": "a motorcycle",
         "stereo_motorcycle_right": "a motorcycle", "coins": "coins", "moon": "the moon", "page": "a page",
         "text": "text", "grass": "grass", "gravel": "gravel", "brick": "a brick wall", "cell": "a cell",
         "clock": "a clock", "astronaut": "an astronaut", "coffee": "a cup of coffee", "camera": "a cameraman"}
DIRECTIONS = {(1, 0): "right", (-1, 0): "left", (0, 1): "down", (0, -1): "up"}


@dataclass(frozen=True)
class Layer:
    """One picture seen through a moving window, placed on screen.

    Screen placement is in units of the frame's short side, relative to the frame centre (y down);
    the background fills the frame (`size_*` = 0 means "whole frame"). The window over the picture
    is in units of the picture's short side, as in `photos.PhotoClip`.
    """

    picture: str  # an image name, or "texture:<seed>"
    center_start: tuple[float, float]
    center_end: tuple[float, float]
    window_start: float
    window_end: float
    angle_start: float
    angle_end: float
    jitter: float  # handheld shake, in units of the window
    blur: int  # Gaussian blur radius applied to the picture (defocus), pixels at the layer's scale
    seed: int
    # Foreground only.
    pos_start: tuple[float, float] = (0.0, 0.0)
    pos_end: tuple[float, float] = (0.0, 0.0)
    size_start: float = 0.0
    size_end: float = 0.0
    aspect: float = 1.0
    shape_power: float = 2.0  # superellipse exponent: 2 an ellipse, large a rounded rectangle
    shape_angle: float = 0.0


@dataclass(frozen=True)
class Scene:
    layers: tuple[Layer, ...]  # back to front
    gain_end: float
    tint_end: tuple[float, float, float]
    noise: float  # sensor noise sigma, in 8-bit levels
    caption: str


def _picture_choices(held_out: bool) -> list[str]:
    if held_out:
        return list(HELD_OUT_IMAGES)
    return list(COLOR) + list(GRAY) + [f"texture:{i}" for i in range(TEXTURES)]


def _window_path(rng: np.random.Generator, picture: str, *, background: bool) -> dict:
    height, width = _original(picture).shape[:2]
    short = min(height, width)
    window = float(rng.uniform(0.3, 0.9) if background else rng.uniform(0.25, 0.8))
    room = np.maximum(np.array([width, height]) / short / 2 - window / np.sqrt(2), 0.0)
    start = rng.uniform(-1, 1, 2) * room
    motion = rng.choice(["static", "pan", "zoom", "rotate", "pan"]) if background else rng.choice(["static", "pan"])
    end, window_end, angle_end = start.copy(), window, 0.0
    angle = float(rng.uniform(-10, 10))
    if motion == "pan":
        end = rng.uniform(-1, 1, 2) * room
    elif motion == "zoom":
        window_end = float(np.clip(window * rng.uniform(0.6, 1.6), 0.2, 0.95))
    elif motion == "rotate":
        angle_end = float(rng.uniform(-40, 40))
    return dict(picture=picture, center_start=tuple(map(float, start)), center_end=tuple(map(float, end)),
                window_start=window, window_end=window_end, angle_start=angle, angle_end=angle + angle_end,
                jitter=float(rng.choice([0.0, 0.0, rng.uniform(0.002, 0.01)])),
                blur=int(rng.choice([0, 0, 0, 1, 2])), seed=int(rng.integers(2**31)))


def sample_scene(seed: int, index: int, *, held_out: bool = False) -> Scene:
    """The scene at `index`, from its own generator seeded by (seed, index): any subset reproduces."""
    rng = np.random.default_rng([seed, index, int(held_out)])
    pictures = _picture_choices(held_out)
    count = int(rng.choice([0, 1, 2, 3], p=[0.15, 0.35, 0.3, 0.2]))
    photos = [p for p in pictures if not p.startswith("texture:")]
    textures = [p for p in pictures if p.startswith("texture:")]
    # Photographs three times in five (their content is what footage shows), textures otherwise.
    chosen = [str(rng.choice(textures if textures and rng.random() < 0.4 else photos)) for _ in range(count + 1)]
    layers = [Layer(**_window_path(rng, chosen[0], background=True))]
    moves = []
    for picture in chosen[1:]:
        start = rng.uniform(-0.45, 0.45, 2)
        heading = rng.uniform(0, 2 * np.pi)
        travel = rng.uniform(0.1, 0.7)
        end = start + travel * np.array([np.cos(heading), np.sin(heading)])
        size = float(rng.uniform(0.25, 0.75))
        layers.append(Layer(**_window_path(rng, picture, background=False),
                            pos_start=tuple(map(float, start)), pos_end=tuple(map(float, end)),
                            size_start=size, size_end=float(size * rng.uniform(0.7, 1.4)),
                            aspect=float(rng.uniform(0.6, 1.6)), shape_power=float(rng.choice([2.0, 2.0, 4.0, 8.0])),
                            shape_angle=float(rng.uniform(0, 180))))
        step = np.round(end - start, 6)
        axis = int(np.argmax(np.abs(step)))
        key = (int(np.sign(step[0])), 0) if axis == 0 else (0, int(np.sign(step[1])))
        moves.append(f"{_noun(picture)} moving {DIRECTIONS.get(key, 'across')}")
    caption = (" and ".join(moves) + " in front of " if moves else "") + _noun(chosen[0])
    return Scene(tuple(layers), gain_end=float(rng.uniform(0.7, 1.3)),
                 tint_end=tuple(float(x) for x in rng.uniform(0.9, 1.1, 3)),
                 noise=float(rng.choice([0.0, rng.uniform(0.5, 4.0)])), caption=caption)


def _noun(picture: str) -> str:
    return "a texture" if picture.startswith("texture:") else NOUNS[picture]


def render_scene(scene: Scene, *, frames: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """uint8 [T, height, width, 3]."""
    t = np.linspace(0.0, 1.0, frames) if frames > 1 else np.zeros(1)
    short = min(height, width)
    # Output pixel centres relative to the frame centre, in units of the short side.
    xs = ((np.arange(width) + 0.5) - width / 2) / short
    ys = ((np.arange(height) + 0.5) - height / 2) / short
    px, py = np.meshgrid(xs, ys)
    out = np.zeros((frames, height, width, 3), np.float32)
    for layer in scene.layers:
        rgb, alpha = _render_layer(layer, t, px, py, short)
        out = rgb if alpha is None else out * (1 - alpha) + rgb * alpha
    gain = 1 + (scene.gain_end - 1) * t
    tint = 1 + (np.asarray(scene.tint_end) - 1) * t[:, None]
    out = out * (gain[:, None] * tint)[:, None, None, :]
    if scene.noise > 0:
        out = out + np.random.default_rng(seed).normal(0, scene.noise, out.shape).astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _render_layer(layer: Layer, t: np.ndarray, px: np.ndarray, py: np.ndarray, short: int):
    """(rgb float [T,H,W,3], alpha float [T,H,W,1] or None for the background)."""
    background = layer.size_start == 0
    if background:
        u = np.broadcast_to(px, (len(t),) + px.shape)
        v = np.broadcast_to(py, (len(t),) + py.shape)
        pixels = short
    else:
        size = (layer.size_start + (layer.size_end - layer.size_start) * t)[:, None, None]
        pos = np.asarray(layer.pos_start) + (np.asarray(layer.pos_end) - np.asarray(layer.pos_start)) * t[:, None]
        u = (px[None] - pos[:, 0, None, None]) / size
        v = (py[None] - pos[:, 1, None, None]) / size
        pixels = max(8, int(short * max(layer.size_start, layer.size_end)))
    source = _source(layer.picture, pixels, layer.window_start, layer.window_end, layer.blur)
    src_h, src_w = source.shape[:2]
    src_short = min(src_h, src_w)
    rng = np.random.default_rng(layer.seed)
    shake = np.cumsum(rng.normal(0, layer.jitter, (len(t), 2)), axis=0) if layer.jitter else np.zeros((len(t), 2))
    centers = np.asarray(layer.center_start) + (np.asarray(layer.center_end) - np.asarray(layer.center_start)) * t[:, None]
    centers = centers + shake
    windows = layer.window_start * (layer.window_end / layer.window_start) ** t
    angles = np.deg2rad(layer.angle_start + (layer.angle_end - layer.angle_start) * t)
    scale = (windows * src_short)[:, None, None]
    cos, sin = np.cos(angles)[:, None, None], np.sin(angles)[:, None, None]
    x = src_w / 2 + centers[:, 0, None, None] * src_short + scale * (cos * u + sin * v)
    y = src_h / 2 + centers[:, 1, None, None] * src_short + scale * (-sin * u + cos * v)
    rgb = _bilinear(source, x - 0.5, y - 0.5).astype(np.float32)
    if background:
        return rgb, None
    a = np.deg2rad(layer.shape_angle)
    ru = (np.cos(a) * u + np.sin(a) * v) / (0.5 * np.sqrt(layer.aspect))
    rv = (-np.sin(a) * u + np.cos(a) * v) / (0.5 / np.sqrt(layer.aspect))
    radius = (np.abs(ru) ** layer.shape_power + np.abs(rv) ** layer.shape_power) ** (1 / layer.shape_power)
    # A one-pixel feather: the edge of a real object is antialiased by the lens and sensor.
    edge = 1.0 / (0.5 * size * short)
    alpha = np.clip((1 - radius) / edge + 0.5, 0, 1)[..., None].astype(np.float32)
    return rgb, alpha


@functools.cache
def _original(picture: str) -> np.ndarray:
    """uint8 [H, W, 3] at full resolution."""
    if picture.startswith("texture:"):
        return _texture(int(picture.split(":")[1]))
    import skimage.data

    if picture.startswith("stereo_motorcycle"):
        image = skimage.data.stereo_motorcycle()[0 if picture == "stereo_motorcycle" else 1]
    else:
        image = getattr(skimage.data, picture)()
    if image.ndim == 2:
        # Greyscale pictures get a fixed tint each, so they read as colour footage of a toned scene.
        tint = np.random.default_rng(list(picture.encode())).uniform(0.75, 1.0, 3)
        image = np.clip(image[..., None].astype(np.float32) * tint, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(image[..., :3])


@functools.lru_cache(maxsize=128)
def _source(picture: str, pixels: int, window_start: float, window_end: float, blur: int) -> np.ndarray:
    """The picture resized once so the smallest window spans ~1.25x the layer's pixels (as in
    photos.py: enough detail for zooms, little enough minification that bilinear does not alias)."""
    image = _original(picture)
    height, width = image.shape[:2]
    factor = 1.25 * pixels / (max(window_start, window_end) * min(height, width))
    new = (max(2, round(width * factor)), max(2, round(height * factor)))
    resized = Image.fromarray(image).resize(new, Image.LANCZOS) if factor < 1 else Image.fromarray(image)
    if blur:
        resized = resized.filter(ImageFilter.GaussianBlur(blur))
    return np.asarray(resized)


def _texture(seed: int, side: int = 384) -> np.ndarray:
    """A 1/f^beta colour noise field, cut into regions by a second field's level set: smooth shading
    with hard edges between two materials, the statistics of natural images at small scale."""
    rng = np.random.default_rng([7, seed])
    fy = np.fft.fftfreq(side)[:, None]
    fx = np.fft.fftfreq(side)[None, :]
    radius = np.sqrt(fx**2 + fy**2)
    radius[0, 0] = 1.0

    def field(beta: float, channels: int) -> np.ndarray:
        spectrum = (rng.normal(size=(channels, side, side)) + 1j * rng.normal(size=(channels, side, side))) / radius**beta
        spectrum[:, 0, 0] = 0
        values = np.fft.ifft2(spectrum).real
        return (values - values.mean()) / (values.std() + 1e-8)

    mix = rng.normal(size=(3, 3)) * 0.4 + np.eye(3)  # correlated channels, as natural colours are
    materials = []
    for _ in range(2):
        base = rng.uniform(40, 215, 3)
        noise = np.einsum("ij,jhw->hwi", mix, field(rng.uniform(1.2, 2.2), 3))
        materials.append(base + noise * rng.uniform(10, 45))
    regions = field(rng.uniform(1.5, 2.5), 1)[0] > rng.uniform(-0.5, 0.5)
    image = np.where(regions[..., None], materials[0], materials[1])
    return np.clip(image, 0, 255).astype(np.uint8)


def natural_test_clips(*, frames: int = 32, seed: int = 0) -> list[tuple[str, np.ndarray]]:
    """Footage of the held-out pictures at the sizes users bring: QCIF 176x144 (a head-and-shoulders
    shot of the astronaut, handheld), 16:9 256x144, and a square 128x128; (name, uint8 [T,H,W,3])."""
    clips = []
    sizes = [(144, 176), (144, 256), (128, 128)]
    for i, (height, width) in enumerate(sizes):
        scene = sample_scene(seed, i, held_out=True)
        clips.append((f"heldout-{i}-{width}x{height}", render_scene(scene, frames=frames, height=height, width=width,
                                                                    seed=seed)))
    return clips
