"""Line plots as PNG, drawn with Pillow (matplotlib is not a dependency of vidtool).

One plot per file: a title, labelled axes with a few ticks, one polyline per series and a legend.
Enough to eyeball per-frame PSNR/SSIM curves and flicker over time next to the JSON numbers.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vidtool.atomic import atomic_path

SIZE = (720, 420)
MARGIN = (70, 40, 20, 50)  # left, top, right, bottom
COLORS = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189))


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    if high <= low:
        return [low]
    step = 10 ** math.floor(math.log10((high - low) / count))
    step *= min((m for m in (1, 2, 5, 10) if (high - low) / (step * m) <= count), default=10)
    start = math.ceil(low / step) * step
    return [start + i * step for i in range(int((high - start) / step + 1e-9) + 1)]


def line_plot(path: str | Path, series: dict[str, np.ndarray], *, title: str, xlabel: str, ylabel: str,
              x0: int = 0) -> None:
    """Write a PNG with each series ys (x = x0, x0+1, …) drawn as a line."""
    image = Image.new("RGB", SIZE, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    left, top, right, bottom = MARGIN[0], MARGIN[1], SIZE[0] - MARGIN[2], SIZE[1] - MARGIN[3]
    values = np.concatenate([np.asarray(ys, dtype=np.float64) for ys in series.values()])
    values = values[np.isfinite(values)]
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    if high - low < 1e-12:
        low, high = low - 0.5, high + 0.5
    pad = (high - low) * 0.05
    low, high = low - pad, high + pad
    length = max(len(ys) for ys in series.values())
    x_high = x0 + max(length - 1, 1)

    def at(x: float, y: float) -> tuple[float, float]:
        return (left + (x - x0) / (x_high - x0) * (right - left), bottom - (y - low) / (high - low) * (bottom - top))

    draw.rectangle([left, top, right, bottom], outline="black")
    for y in _ticks(low, high):
        _, py = at(x0, y)
        draw.line([left - 4, py, left, py], fill="black")
        draw.text((left - 6, py), f"{y:.4g}", fill="black", font=font, anchor="rm")
    for x in _ticks(x0, x_high):
        if float(x).is_integer():
            px, _ = at(x, low)
            draw.line([px, bottom, px, bottom + 4], fill="black")
            draw.text((px, bottom + 6), str(int(x)), fill="black", font=font, anchor="mt")
    draw.text((SIZE[0] / 2, 12), title, fill="black", font=font, anchor="mt")
    draw.text(((left + right) / 2, SIZE[1] - 14), xlabel, fill="black", font=font, anchor="mm")
    draw.text((8, top - 20), ylabel, fill="black", font=font, anchor="lm")
    for k, (label, ys) in enumerate(series.items()):
        color = COLORS[k % len(COLORS)]
        points = [at(x0 + i, y) for i, y in enumerate(np.asarray(ys, dtype=np.float64)) if np.isfinite(y)]
        if len(points) > 1:
            draw.line(points, fill=color, width=2)
        for px, py in points:
            draw.ellipse([px - 2, py - 2, px + 2, py + 2], fill=color)
        draw.text((right - 8, top + 8 + 14 * k), label, fill=color, font=font, anchor="rt")
    path = Path(path)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
