"""Sketches for the Video–Mask–Sketch–Text samples of sketch-guided inpainting (MotionAura §4, App. C.4).

MotionAura pairs each segmented object with a drawing of its class from QuickDraw or Sketchy,
matched by CLIP similarity of the labels (Fig. S.9). Here:

- `SketchLibrary` reads QuickDraw `.ndjson` files (one JSON per line with `word` and `drawing`, a
  list of strokes [[x…], [y…]] or, in the raw format, [[x…], [y…], [t…]]; unrecognised drawings are
  skipped) and Sketchy-style image folders (`<class>/<n>.png`, the class from the folder name) and
  rasterises a drawing to a binary image (1 on strokes).
- `TextMatcher` embeds object classes and library words with a CLIP text tower from a local folder,
  or by default with vidtool's sentence encoder (`vidtool.text.TextEncoder`, pooled vectors), and
  returns the word of highest cosine similarity.
- Without a library, `contour_sketch` draws the object's outline from its mask.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from vidtool.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class Drawing:
    word: str
    source: str  # "file.ndjson:LINE" or the image path, for the record
    strokes: tuple | None = None  # QuickDraw strokes, each (xs, ys)
    image: Path | None = None  # a Sketchy-style image


class SketchLibrary:
    """Drawings by class word. `per_class` caps the drawings kept per word (QuickDraw has ~100k each)."""

    def __init__(self, path: str | os.PathLike, per_class: int = 100):
        self.path = Path(path)
        if not self.path.exists():
            raise UserError(f"no such sketch library: {self.path}")
        self.by_word: dict[str, list[Drawing]] = {}
        files = [self.path] if self.path.is_file() else sorted(p for p in self.path.rglob("*") if p.is_file())
        for file in files:
            if file.suffix == ".ndjson":
                self._read_ndjson(file, per_class)
            elif file.suffix.lower() in IMAGE_SUFFIXES and self.path.is_dir():
                word = file.parent.name.replace("_", " ").strip()
                drawings = self.by_word.setdefault(word, [])
                if len(drawings) < per_class:
                    drawings.append(Drawing(word, str(file.relative_to(self.path)), image=file))
        self.by_word = {w: d for w, d in self.by_word.items() if d}
        if not self.by_word:
            raise UserError(f"{self.path} holds no sketches: give QuickDraw .ndjson files or folders of "
                            "Sketchy-style images named by class")

    @property
    def words(self) -> list[str]:
        return sorted(self.by_word)

    def digest(self) -> str:
        """What the library holds (words and drawing sources), for a run's settings."""
        listing = json.dumps({w: [d.source for d in ds] for w, ds in sorted(self.by_word.items())})
        return hashlib.sha256(listing.encode()).hexdigest()[:16]

    def pick(self, word: str, seed: str) -> Drawing:
        """One drawing of `word`, chosen by a digest of `seed`, so the choice does not depend on sharding."""
        drawings = self.by_word[word]
        return drawings[int(hashlib.sha256(seed.encode()).hexdigest(), 16) % len(drawings)]

    def _read_ndjson(self, file: Path, per_class: int) -> None:
        name = file.relative_to(self.path).as_posix() if self.path.is_dir() else file.name
        with open(file, encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                # QuickDraw files hold ~100k drawings of a word: once a word is full its lines are
                # recognised by a cheap search and not parsed.
                quick = _WORD_RE.search(line)
                if quick and len(self.by_word.get(quick.group(1).strip(), ())) >= per_class:
                    continue
                try:
                    entry = json.loads(line)
                    word, drawing = str(entry["word"]).strip(), entry["drawing"]
                    strokes = tuple((tuple(map(float, s[0])), tuple(map(float, s[1]))) for s in drawing)
                except (json.JSONDecodeError, KeyError, TypeError, ValueError, IndexError):
                    raise UserError(f"{file}:{number}: not a QuickDraw record (needs \"word\" and \"drawing\": "
                                    "[[xs], [ys]] strokes)") from None
                if entry.get("recognized") is False or not any(len(xs) for xs, _ in strokes):
                    continue
                drawings = self.by_word.setdefault(word, [])
                if len(drawings) < per_class:
                    drawings.append(Drawing(word, f"{name}:{number}", strokes=strokes))


_WORD_RE = re.compile(r'"word"\s*:\s*"([^"\\]*)"')


def render(drawing: Drawing, size: int) -> np.ndarray:
    """A drawing as uint8 [size, size], 1 on strokes, centred and scaled to fit with a margin."""
    if drawing.image is not None:
        try:
            with Image.open(drawing.image) as image:
                grey = np.asarray(image.convert("L"))
        except OSError as e:
            raise UserError(f"{drawing.image}: not a readable image ({e})") from None
        return fit(grey < 128, size)
    points = np.concatenate([np.stack([xs, ys], 1) for xs, ys in drawing.strokes if len(xs)])
    low, span = points.min(0), max(float(np.ptp(points, 0).max()), 1e-6)
    width = max(1, round(size / 64))
    margin = 0.06 * size + width
    scale = (size - 2 * margin) / span
    offset = (size - np.ptp(points, 0) * scale) / 2 - low * scale
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    for xs, ys in drawing.strokes:
        xy = [(float(x * scale + offset[0]), float(y * scale + offset[1])) for x, y in zip(xs, ys)]
        if len(xy) == 1:
            draw.point(xy, fill=255)
        else:
            draw.line(xy, fill=255, width=width, joint="curve")
    return (np.asarray(canvas) > 127).astype(np.uint8)


def fit(strokes: np.ndarray, size: int) -> np.ndarray:
    """A binary image cropped to its content and fitted, aspect kept, into [size, size] with a margin."""
    ys, xs = np.nonzero(strokes)
    if len(ys) == 0:
        return np.zeros((size, size), np.uint8)
    crop = strokes[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    inner = max(1, round(size * 0.88))
    scale = inner / max(crop.shape)
    h, w = max(1, round(crop.shape[0] * scale)), max(1, round(crop.shape[1] * scale))
    resized = resize_binary(crop, w, h)
    out = np.zeros((size, size), np.uint8)
    top, left = (size - h) // 2, (size - w) // 2
    out[top : top + h, left : left + w] = resized
    return out


def resize_binary(strokes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize a binary image; a target pixel is set when any stroke falls in it, so thin lines survive shrinking."""
    image = Image.fromarray(strokes.astype(np.uint8) * 255)
    return (np.asarray(image.resize((width, height), Image.BOX)) > 0).astype(np.uint8)


def outline(mask: np.ndarray, width: int = 1) -> np.ndarray:
    """The inner boundary of binary masks [..., H, W], `width` pixels thick (4-neighbour erosion)."""
    inner = mask.astype(bool)
    for _ in range(width):
        padded = np.pad(inner, [(0, 0)] * (inner.ndim - 2) + [(1, 1), (1, 1)])
        inner = (padded[..., 1:-1, 1:-1] & padded[..., :-2, 1:-1] & padded[..., 2:, 1:-1]
                 & padded[..., 1:-1, :-2] & padded[..., 1:-1, 2:])
    return (mask.astype(bool) & ~inner).astype(np.uint8)


def contour_sketch(masks: np.ndarray, size: int) -> np.ndarray:
    """Without a library: the outline of the object where it is largest, fitted into [size, size]."""
    largest = masks[int(masks.reshape(len(masks), -1).sum(1).argmax())]
    filled = fit(largest, size)
    return outline(filled, width=max(1, round(size / 128)))


def place_in_boxes(sketch: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """uint8 [T, H, W]: the sketch stretched onto the object's bounding box in every frame where it is
    visible (0 elsewhere) — the per-frame `sketch` array the shapes data sets also carry."""
    out = np.zeros(masks.shape, np.uint8)
    for t, mask in enumerate(masks):
        ys, xs = np.nonzero(mask)
        if len(ys) == 0:
            continue
        top, left, h, w = ys.min(), xs.min(), ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
        out[t, top : top + h, left : left + w] = resize_binary(sketch, int(w), int(h))
    return out


def sketch_png(strokes: np.ndarray) -> Image.Image:
    """Black strokes on white, as sketch data sets draw them."""
    return Image.fromarray(((1 - strokes) * 255).astype(np.uint8), mode="L")


class TextMatcher:
    """Class text → the closest library word by cosine similarity of text embeddings."""

    def __init__(self, words: list[str], *, clip: str | os.PathLike | None = None, text_encoder: str | None = None,
                 device: str = "cpu"):
        import torch

        self.words = list(words)
        self.device = device
        if clip is not None:
            from transformers import AutoTokenizer, CLIPModel

            folder = Path(clip)
            if not (folder / "config.json").is_file():
                raise UserError(f"--clip {folder} is not a transformers CLIP folder (no config.json)")
            self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            self.clip = CLIPModel.from_pretrained(folder, local_files_only=True).to(device).eval()
            self.name = f"clip:{folder.name}"
        else:
            from vidtool.text import TextEncoder

            self.clip = None
            self.encoder = TextEncoder(text_encoder, device=device)
            self.name = f"text:{self.encoder.name}"
        with torch.inference_mode():
            self.word_vectors = self.embed(self.words)

    def embed(self, texts: list[str]):
        import torch

        if self.clip is None:
            return self.encoder.encode(texts).pooled
        batch = self.tokenizer(texts, padding=True, truncation=True, return_tensors="pt").to(self.device)
        with torch.inference_mode():
            features = self.clip.get_text_features(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        if not isinstance(features, torch.Tensor):  # newer transformers return a model output
            features = features.pooler_output
        return torch.nn.functional.normalize(features.float(), dim=-1)

    def match(self, text: str) -> tuple[str, float]:
        scores = (self.embed([text]) @ self.word_vectors.T)[0]
        best = int(scores.argmax())
        return self.words[best], float(scores[best])
