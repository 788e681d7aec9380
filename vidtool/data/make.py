"""`make_dataset`: write a `shapes`, `photos` or `scenes` dataset as clip files plus a JSONL manifest.

Layout of `out_dir`:

    manifest.jsonl            one record per clip (see below), rewritten at the end of every run
    dataset.json              the options the clips were made with; a rerun must use the same ones
    clips/000000.mp4          the video (or .gif, or a folder 000000/ of PNG frames with fmt="png")
    clips/000000.masks.npz    shapes only: arrays `mask` (1 on the primary shape) and `sketch`
                              (1 on the mask's boundary), uint8 [T,H,W] each

Masks and sketches are binary (0/1), at the clip's own frame count, size and fps, stored together
with `np.savez_compressed` (lossless; a 16x64x64 pair packs into about a kilobyte). A record's
`mask` and `sketch` both name that file: read them with `np.load(path)["mask"]` and
`np.load(path)["sketch"]`.

Records: `path`, `caption`, `fps`, `frames`, `height`, `width`; for shapes also `mask`, `sketch`,
`color`, `shape`, `direction`, `speed` ("slow" | "medium" | "fast") and `background` (a color name
or null); for photos `image`, `motion` and `speed`; for scenes `pictures` (back to front). Every clip
depends only on (seed, index), so a rerun skips clips whose files exist and a larger `n` extends a
dataset without changing its first clips.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from vidtool.atomic import atomic_path, atomic_write_text
from vidtool.data.manifest import write_manifest
from vidtool.data.shapes import HELD_OUT
from vidtool.errors import UserError
from vidtool.video import write_mp4s, write_video

KINDS = ("shapes", "photos", "scenes")
FORMATS = ("mp4", "gif", "png")
BATCH = 64
WRITERS = 2


def make_dataset(
    kind: str,
    out_dir: str | os.PathLike,
    n: int,
    *,
    frames: int = 16,
    size: int = 64,
    fps: float = 8,
    seed: int = 0,
    held_out=HELD_OUT,
    only_held_out: bool = False,
    fmt: str = "mp4",
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Make (or finish) `n` clips of `kind` in `out_dir`; returns the manifest's path.

    `held_out` lists (color, shape, direction) triples that shapes clips never show;
    `only_held_out` makes only those, for evaluation. `progress(done, n)` is called after each clip.
    """
    if kind not in KINDS:
        raise UserError(f"unknown dataset kind {kind!r}; choose one of {', '.join(KINDS)}")
    if fmt not in FORMATS:
        raise UserError(f"unknown clip format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if n < 1 or frames < 1 or size < 8 or not fps > 0:
        raise UserError(
            "need n >= 1, frames >= 1, size >= 8 and fps > 0 "
            f"(got n={n}, frames={frames}, size={size}, fps={fps})"
        )
    if kind == "photos" and only_held_out:
        raise UserError("only_held_out applies to shapes and scenes; photos have no held-out combinations")

    out_dir = Path(out_dir)
    options = {"kind": kind, "frames": frames, "size": size, "fps": fps, "seed": seed, "fmt": fmt}
    if kind == "shapes":
        options["held_out"] = [list(combo) for combo in held_out]
    if kind in ("shapes", "scenes"):
        options["only_held_out"] = only_held_out
    _claim(out_dir, options)

    if kind == "shapes":
        make_clip = _shapes_maker(held_out, only_held_out)
    elif kind == "scenes":
        make_clip = _scenes_maker(only_held_out)
    else:
        make_clip = _photos_maker()
    records = []
    with _ClipWriter(fps, fmt) as writer:
        for index in range(n):
            record, render = make_clip(index, options)
            records.append(record)
            if not all((out_dir / record[key]).exists() for key in ("path", "mask") if key in record):
                video, masks = render()
                masks_path = out_dir / record["mask"] if masks else None
                writer.add(_Clip(out_dir / record["path"], video, masks_path, masks))
            if progress is not None:
                progress(index + 1, n)
    manifest = out_dir / "manifest.jsonl"
    write_manifest(manifest, records)
    return manifest


def _claim(out_dir: Path, options: dict) -> None:
    """Record the options in `dataset.json`, refusing a folder made with other ones.

    Skipping existing clips is only sound if they were made the same way; otherwise a rerun with
    a new size would silently mix two datasets.
    """
    stamp = out_dir / "dataset.json"
    if stamp.exists():
        try:
            previous = json.loads(stamp.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise UserError(f"cannot read {stamp}: {e}; delete it to start the dataset afresh") from None
        if previous != options:
            changed = sorted(k for k in options.keys() | previous.keys() if previous.get(k) != options.get(k))
            raise UserError(
                f"{out_dir} holds a dataset made with other options ({', '.join(changed)} differ); "
                "use a new folder or the same options"
            )
        return
    atomic_write_text(stamp, json.dumps(options) + "\n")


def _shapes_maker(held_out, only_held_out):
    """index -> (record, render), where render() gives (video, masks); sampling is cheap, rendering is not."""
    from vidtool.data.shapes import combinations, render_shape_clip, sample_shape_clip

    combos = combinations(held_out, only_held_out)

    def make_clip(index: int, options: dict):
        clip = sample_shape_clip(options["seed"], index, combos)
        masks = f"clips/{index:06d}.masks.npz"
        record = {
            "path": _clip_name(index, options["fmt"]),
            "caption": clip.caption,
            **_shape(options),
            "mask": masks,
            "sketch": masks,
            "color": clip.color,
            "shape": clip.shape,
            "direction": clip.direction,
            "speed": clip.speed,
            "background": clip.background,
        }

        def render():
            drawn = render_shape_clip(clip, frames=options["frames"], size=options["size"])
            return drawn.video, {"mask": drawn.mask, "sketch": drawn.sketch}

        return record, render

    return make_clip


def _photos_maker():
    from vidtool.data.photos import render_photo_clip, sample_photo_clip

    def make_clip(index: int, options: dict):
        clip = sample_photo_clip(options["seed"], index)
        record = {
            "path": _clip_name(index, options["fmt"]),
            "caption": clip.caption,
            **_shape(options),
            "image": clip.image,
            "motion": clip.motion,
            "speed": clip.speed,
        }
        return record, lambda: (render_photo_clip(clip, frames=options["frames"], size=options["size"]), None)

    return make_clip


def _scenes_maker(only_held_out: bool):
    from vidtool.data.scenes import render_scene, sample_scene

    def make_clip(index: int, options: dict):
        scene = sample_scene(options["seed"], index, held_out=only_held_out)
        record = {"path": _clip_name(index, options["fmt"]), "caption": scene.caption, **_shape(options),
                  "pictures": [layer.picture for layer in scene.layers]}
        size = options["size"]
        return record, lambda: (render_scene(scene, frames=options["frames"], height=size, width=size,
                                             seed=options["seed"] * 1_000_003 + index), None)

    return make_clip


def _shape(options: dict) -> dict:
    """The clip-shape fields of a record (vidtool.data.manifest): every clip of a dataset has the same."""
    return {"fps": options["fps"], "frames": options["frames"], "height": options["size"], "width": options["size"]}


def _clip_name(index: int, fmt: str) -> str:
    return f"clips/{index:06d}" if fmt == "png" else f"clips/{index:06d}.{fmt}"


@dataclass(frozen=True)
class _Clip:
    path: Path
    video: np.ndarray
    masks_path: Path | None
    masks: dict[str, np.ndarray] | None


class _ClipWriter:
    """Writes clips a batch at a time on background threads while the caller renders the next ones.

    Writing is mostly waiting (on ffmpeg, and on fsync for every atomic write), so threads overlap
    it with rendering; two batches in flight keep both cores busy without holding many clips.
    """

    def __init__(self, fps: float, fmt: str):
        self.fps, self.fmt = fps, fmt
        self.queued: list[_Clip] = []
        self.in_flight: list[Future] = []
        self.pool = ThreadPoolExecutor(max_workers=WRITERS)

    def __enter__(self):
        return self

    def __exit__(self, error_type, *_):
        try:
            if error_type is None:
                self._submit()
                for job in self.in_flight:
                    job.result()
        finally:
            self.pool.shutdown(wait=True)

    def add(self, clip: _Clip) -> None:
        self.queued.append(clip)
        if len(self.queued) >= BATCH:
            self._submit()

    def _submit(self) -> None:
        if len(self.in_flight) >= WRITERS:
            self.in_flight.pop(0).result()  # re-raises a failed write here, in the caller
        if self.queued:
            self.in_flight.append(self.pool.submit(self._write, self.queued, self.fps, self.fmt))
            self.queued = []

    @staticmethod
    def _write(clips: list[_Clip], fps: float, fmt: str) -> None:
        for clip in clips:
            if clip.masks is not None:
                _write_npz(clip.masks_path, clip.masks)
        # Videos go last: a video's presence is what marks its clip done on a rerun.
        if fmt == "mp4":
            # One ffmpeg run per batch: starting one per clip would cost more than encoding it.
            write_mp4s([(clip.path, clip.video) for clip in clips], fps)
        elif fmt == "gif":
            for clip in clips:
                write_video(clip.path, clip.video, fps)
        else:
            for clip in clips:
                _write_png_folder(clip.path, clip.video)


def _write_png_folder(dest: Path, video: np.ndarray) -> None:
    """Frames 0000.png, 0001.png, ... written into a temp folder that is then renamed into place."""
    from PIL import Image

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        for t, frame in enumerate(video):
            Image.fromarray(frame).save(tmp / f"{t:04d}.png")
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write_npz(dest: Path, arrays: dict[str, np.ndarray]) -> None:
    # Through a file object: given a name, numpy would append ".npz" to the temp file's name.
    with atomic_path(dest) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
