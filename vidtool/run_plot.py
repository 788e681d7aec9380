"""A training run's metrics.jsonl drawn as one PNG (a panel per quantity against the update), with
Pillow alone, for people without TensorBoard: `vidtool runs RUN`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from vidtool.errors import UserError

PANEL = (360, 200)  # width, height of one panel in pixels
MARGIN = (56, 22, 12, 26)  # left, top, right, bottom: room for the value labels and the title
COLUMNS = 3
SKIPPED = ("step", "samples_seen")  # counters, not quantities to watch


def read_records(path: Path) -> list[dict]:
    if not path.is_file():
        raise UserError(f"no metrics at {path}: is this a training run's folder (train-vae or train-denoiser -o)?")
    records = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{number} is not a JSON record ({e.msg}); the file was cut or edited") from e
    if not records:
        raise UserError(f"{path} holds no records yet: the run logs every 10 updates")
    return records


def plot_metrics(records: list[dict], out: Path) -> list[str]:
    """Draw each quantity of `records` against "step" into `out`; returns the quantities drawn."""
    names = [k for k in records[0] if k not in SKIPPED]
    rows = math.ceil(len(names) / COLUMNS)
    width, height = PANEL
    image = Image.new("RGB", (width * min(COLUMNS, len(names)), height * rows), "white")
    draw = ImageDraw.Draw(image)
    steps = np.array([r["step"] for r in records], dtype=float)
    for i, name in enumerate(names):
        values = np.array([r.get(name, math.nan) for r in records], dtype=float)
        _panel(draw, (i % COLUMNS) * width, (i // COLUMNS) * height, name, steps, values)
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out, format="PNG")
    return names


def _panel(draw: ImageDraw.ImageDraw, x0: int, y0: int, name: str, steps: np.ndarray, values: np.ndarray) -> None:
    left, top, right, bottom = MARGIN
    width, height = PANEL
    box = (x0 + left, y0 + top, x0 + width - right, y0 + height - bottom)
    draw.rectangle(box, outline=(160, 160, 160))
    draw.text((x0 + left, y0 + 4), name, fill="black")
    finite = np.isfinite(values)
    if not finite.any():
        return
    low, high = float(values[finite].min()), float(values[finite].max())
    first, last = float(steps.min()), float(steps.max())
    draw.text((x0 + 2, box[1]), f"{high:.3g}", fill="black")
    draw.text((x0 + 2, box[3] - 10), f"{low:.3g}", fill="black")
    draw.text((box[0], box[3] + 4), f"{first:g}", fill="black")
    draw.text((box[2] - 30, box[3] + 4), f"{last:g}", fill="black")
    span_x, span_y = max(last - first, 1e-12), max(high - low, 1e-12)
    points = [(box[0] + (s - first) / span_x * (box[2] - box[0]), box[3] - (v - low) / span_y * (box[3] - box[1]))
              for s, v in zip(steps[finite], values[finite])]
    if len(points) == 1:
        x, y = points[0]
        draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=(31, 119, 180))
    else:
        draw.line(points, fill=(31, 119, 180), width=2)
