"""Video–Mask–Sketch–Text samples from a video-object-segmentation data set (MotionAura App. C.4, Fig. S.9).

One sample per object of a video: the video (its frame folder), the object's binary mask sequence,
a sketch of the object and a caption. Fig. S.9 captions the videos with Video-LLaVA and finds each
object's sketch by CLIP matching of its label against QuickDraw/Sketchy classes; here the caption
comes from `--captions` (e.g. a `vidtool recaption` output) or from the class, and the sketch from
a `SketchLibrary` matched by text embedding, or, without a library, from the mask's outline.

Per sample, in the output folder: VIDEO/OBJ.masks.npz with `mask` and `sketch` (uint8 [T, H, W],
1 on the object / on the sketch's strokes placed on the object's box in each frame — the arrays the
shapes data sets carry) and VIDEO/OBJ.sketch.png, the sketch alone, black on white, as a sketch
encoder such as SigLIP takes it. The record's `mask` names the npz and its `sketch` the PNG (the
inpainting token set reads an npz or an image there; the PNG is the drawing itself, also for
objects absent from the first frame).

Where an object's class comes from, first found wins: `--classes` (JSON {video: class} or
{video: {object id: class}}), YouTube-VOS meta.json categories, the caption from `--captions`
(matched as a whole sentence), and last the video's name ("car-shadow" → "car shadow").
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vidtool.atomic import atomic_path
from vidtool.data.wording import with_article
from vidtool.data.shards import Outcome
from vidtool.data.sketches import (SketchLibrary, TextMatcher, contour_sketch, outline, place_in_boxes, render,
                                   sketch_png)
from vidtool.data.vos import DEFAULT_FPS, VosLayout, VosVideo, read_objects
from vidtool.errors import UserError

ANY = "*"  # a caption or class for every object of a video


@dataclass(frozen=True)
class CurateOptions:
    sketch_size: int = 256
    min_area: float = 0.001  # of the frame, where the object is largest
    min_score: float | None = None  # below it, the outline replaces a library sketch
    fps: float | None = None


def load_lookup(path: str | os.PathLike, field: str) -> dict[str, dict[str, str]]:
    """{video: {object id or "*": text}} from a JSON object ({video: text} or {video: {id: text}}),
    a YouTube-VOS meta.json (`field` "class": its categories) or a JSONL manifest whose records have
    `video` (or a frame-folder `path`), optional `object_id`, and `caption` (or `class`)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise UserError(f"cannot read {path}: {e}") from None
    table: dict[str, dict[str, str]] = {}
    if path.suffix == ".jsonl":
        from vidtool.data.manifest import read_manifest

        for record in read_manifest(path):
            value = record.get(field)
            if not isinstance(value, str):
                continue
            video = record.get("video") or Path(record["path"]).name
            table.setdefault(str(video), {})[str(record.get("object_id", ANY))] = value
        return table
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not JSON ({e.msg}); give {{video: {field}}} or {{video: {{object id: {field}}}}}") from None
    if isinstance(data, dict) and isinstance(data.get("videos"), dict):  # YouTube-VOS meta.json
        return {v: {str(o): i["category"] for o, i in e.get("objects", {}).items() if i.get("category")}
                for v, e in data["videos"].items()}
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object {{video: {field}}}")
    for video, value in data.items():
        if isinstance(value, str):
            table[str(video)] = {ANY: value}
        elif isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
            table[str(video)] = {str(k): v for k, v in value.items()}
        else:
            raise UserError(f"{path}: entry {video!r} must be a string or {{object id: string}}")
    return table


def _lookup(table: dict[str, dict[str, str]], video: str, obj: int) -> str | None:
    entry = table.get(video, {})
    return entry.get(str(obj), entry.get(ANY))


class SketchCurator:
    """Turns one video of a VOS layout into samples (one per object) written under `out_folder`."""

    def __init__(self, layout: VosLayout, out_folder: Path, *, library: SketchLibrary | None,
                 matcher: TextMatcher | None, captions: dict, classes: dict, options: CurateOptions):
        self.layout, self.out_folder, self.library, self.matcher = layout, out_folder, library, matcher
        self.captions, self.classes, self.options = captions, classes, options
        self._matches: dict[str, tuple[str, float]] = {}

    def __call__(self, video: VosVideo) -> Outcome:
        base = {"path": str(video.frames_dir.resolve()), "video": video.name}
        try:
            objects = read_objects(video)
        except UserError as e:
            return Outcome(errors=[{**base, "error": str(e)}])
        outcome = Outcome()
        declared = set(self.classes.get(video.name, {})) | set(self.layout.categories.get(video.name, {}))
        for obj in sorted(int(k) for k in declared - {ANY} if k.isdigit() and int(k) not in objects.masks):
            outcome.errors.append({**base, "object_id": obj, "error": f"{video.name}: object {obj} is named in the "
                                   "classes but covers no pixel in any mask (empty object)"})
        h, w = objects.size
        for obj, masks in objects.masks.items():
            largest = float(masks.reshape(len(masks), -1).sum(1).max()) / (h * w)
            if largest < self.options.min_area:
                outcome.errors.append({**base, "object_id": obj, "error": (
                    f"{video.name}: object {obj} covers at most {largest:.3%} of a frame, under --min-area "
                    f"{self.options.min_area:.3%}; too small to sketch")})
                continue
            outcome.records.append(self._sample(video, obj, masks, objects, base))
        if not outcome.records and not outcome.errors:
            outcome.errors.append({**base, "error": f"{video.name}: the masks hold no object (all background)"})
        return outcome

    def _sample(self, video: VosVideo, obj: int, masks: np.ndarray, objects, base: dict) -> dict:
        caption = _lookup(self.captions, video.name, obj)
        label, label_source = self._label(video.name, obj, caption)
        size = self.options.sketch_size
        source: dict = {"kind": "contour"}
        strokes = None
        if self.library is not None:
            word, score = self._match(label)
            if self.options.min_score is None or score >= self.options.min_score:
                drawing = self.library.pick(word, f"{video.name}/{obj}")
                strokes = render(drawing, size)
                source = {"kind": "quickdraw" if drawing.strokes is not None else "image", "word": word,
                          "score": round(score, 4), "drawing": drawing.source, "matcher": self.matcher.name}
            else:
                source = {"kind": "contour", "best_word": word, "score": round(score, 4)}
        if strokes is None:
            strokes = contour_sketch(masks, size)
            per_frame = outline(masks)
        else:
            per_frame = place_in_boxes(strokes, masks)
        stem = f"{video.name}/{obj:03d}"
        npz, png = self.out_folder / f"{stem}.masks.npz", self.out_folder / f"{stem}.sketch.png"
        with atomic_path(npz) as tmp, open(tmp, "wb") as f:
            np.savez_compressed(f, mask=masks, sketch=per_frame)
        with atomic_path(png) as tmp:
            sketch_png(strokes).save(tmp, format="PNG")
        fps = self.options.fps or DEFAULT_FPS[self.layout.kind]
        return {**base, "caption": caption if caption is not None else with_article(label), "fps": fps,
                "mask": f"{stem}.masks.npz", "sketch": f"{stem}.sketch.png",
                "object_id": obj, "class": label, "class_source": label_source, "sketch_source": source,
                "frames": int(masks.shape[0]), "height": objects.size[0], "width": objects.size[1],
                "dataset": self.layout.kind}

    def _label(self, video: str, obj: int, caption: str | None) -> tuple[str, str]:
        given = _lookup(self.classes, video, obj)
        if given:
            return given, "classes"
        category = self.layout.categories.get(video, {}).get(str(obj))
        if category:
            return category, "meta.json"
        if caption:
            return caption, "caption"
        return video.replace("-", " ").replace("_", " "), "video name"

    def _match(self, text: str) -> tuple[str, float]:
        if text not in self._matches:
            self._matches[text] = self.matcher.match(text)
        return self._matches[text]

