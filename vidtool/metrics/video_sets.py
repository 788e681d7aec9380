"""The sets `evaluate` measures: a folder of clips, a manifest, or tensor files, as a list of items.

A set is opened cheaply (paths, digests, prompts); each item's frames are read only when asked for,
so a set of thousands of videos never sits in memory. Items keep a stable order (sorted file names,
manifest order, batch order inside a tensor file), which is what pairs a generated set with its
reference and what makes a sharded run, merged, equal to an unsharded one.

Every item carries the digest of the bytes it came from (plus its batch index for tensor files):
cached features are keyed by it, so a renamed file keeps its features and an edited one loses them.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from vidtool.errors import UserError

MEDIA_SUFFIXES = (".mp4", ".webm", ".mov", ".mkv", ".avi", ".gif")
TENSOR_SUFFIX = ".safetensors"


@dataclass(frozen=True)
class Clip:
    frames: np.ndarray  # uint8 [T, H, W, 3] for video sets; int [T, h, w] token ids for token sets
    fps: float | None


@dataclass(frozen=True)
class Item:
    key: str  # what a person reads in messages: a path relative to the set, "file.safetensors#3"
    digest: str  # of the source bytes, with "#index" for an item of a batch
    prompt: str | None
    # load(short_side=None): the frames; a media file with `short_side` S is decoded at no more than
    # about 2·S on its short side (vidtool.video's decode-time scaling) for a caller that resizes to S
    # itself; a tensor file's frames are already in memory at their size and come as they are.
    load: Callable[..., Clip]


@dataclass(frozen=True)
class VideoSet:
    source: str
    kind: str  # "video" or "tokens"
    items: tuple[Item, ...]
    models: tuple[str, ...] = ()  # `vidtool.model` tags recorded by tensor files, for the report

    def __len__(self) -> int:
        return len(self.items)

    @property
    def has_prompts(self) -> bool:
        return bool(self.items) and all(item.prompt is not None for item in self.items)


def open_set(path: str) -> VideoSet:
    """A folder of clips and/or tensor files, a manifest (.jsonl), one tensor file, or one clip."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"no such set: {p}; give a folder of mp4s, a manifest.jsonl or a .safetensors file")
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix.lower() in MEDIA_SUFFIXES + (TENSOR_SUFFIX,))
        if not files:
            raise UserError(f"{p} holds no videos (mp4/webm/mov/mkv/avi/gif) or .safetensors files")
        parts = [_open_file(f, f.name) for f in files]
    elif p.suffix.lower() == ".jsonl":
        parts = [_open_manifest(p)]
    elif p.suffix.lower() in MEDIA_SUFFIXES + (TENSOR_SUFFIX,):
        parts = [_open_file(p, p.name)]
    else:
        raise UserError(f"cannot read a set from {p}: use a folder, a .jsonl manifest, a .safetensors file or a video")
    kinds = {kind for kind, _, _ in parts}
    if len(kinds) > 1:
        raise UserError(f"{p} mixes token files with videos; evaluate them as separate sets")
    items = tuple(item for _, part, _ in parts for item in part)
    if not items:
        raise UserError(f"{p} holds no videos")
    models = tuple(dict.fromkeys(m for _, _, ms in parts for m in ms))
    return VideoSet(source=str(p), kind=kinds.pop(), items=items, models=models)


def file_digest(path: Path) -> str:
    """sha256 (16 hex digits) of a file's bytes; of a frame folder, over its files' names and bytes."""
    h = hashlib.sha256()
    for part in sorted(path.iterdir()) if path.is_dir() else [path]:
        if path.is_dir():
            h.update(part.name.encode())
        with open(part, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


def _open_file(path: Path, key: str, fps: float | None = None):
    """(kind, items, model tags) of one file: a clip is one item, a tensor file one per batch entry."""
    if path.suffix.lower() == TENSOR_SUFFIX:
        return _open_tensor_file(path, key)
    return "video", [Item(key, file_digest(path), None, functools.partial(_read_clip, path, fps))], ()


def _read_clip(path: Path, fps: float | None, short_side: int | None = None) -> Clip:
    from vidtool.video import read_video

    # Within the memory budget (half the free RAM: a larger read is one line before decoding), and
    # shrunk while decoding when the metrics look at `short_side` pixels only.
    video = read_video(path, shrink_for=short_side)
    return Clip(video.frames, fps or video.fps)


def _open_tensor_file(path: Path, key: str):
    from vidtool.tensorfile import load

    tf = load(path, kinds=["video", "tokens"])
    prompts = tf.prompts() or [None] * tf.main.shape[0]
    # The whole file is read once here to learn its batch and prompts; the items keep only the
    # path and reload on demand, one file at a time, so memory stays bounded by one tensor file.
    loader = functools.lru_cache(maxsize=1)(functools.partial(_load_main, path))
    items = [
        Item(f"{key}#{i}", f"{tf.digest}#{i}", prompts[i], functools.partial(_batch_entry, loader, i, tf.fps))
        for i in range(tf.main.shape[0])
    ]
    return tf.kind, items, (tf.model,) if tf.model else ()


def _load_main(path: Path) -> np.ndarray:
    from vidtool.tensorfile import load

    return load(path, kinds=["video", "tokens"]).main.numpy()


def _batch_entry(loader, index: int, fps: float | None, short_side: int | None = None) -> Clip:
    return Clip(loader()[index], fps)


def _open_manifest(path: Path):
    from vidtool.data.manifest import read_manifest, resolve

    records = read_manifest(path)
    items, kinds, models = [], set(), []
    for record in records:
        clip_path = resolve(path, record["path"])
        if not clip_path.exists():
            raise UserError(f"{path}: record {record['path']!r} points at {clip_path}, which does not exist")
        kind, part, tags = _open_file(clip_path, record["path"], fps=record.get("fps"))
        kinds.add(kind)
        # The manifest's caption names what the clip shows; it wins over a prompt inside a tensor file.
        items.extend(part if "caption" not in record else [_with_prompt(i, record["caption"]) for i in part])
        models.extend(tags)
    if len(kinds) > 1:
        raise UserError(f"{path} mixes token files with videos; evaluate them as separate sets")
    return (kinds.pop() if kinds else "video"), items, tuple(models)


def _with_prompt(item: Item, prompt: str) -> Item:
    return Item(item.key, item.digest, prompt, item.load)


def set_description(video_set: VideoSet) -> dict:
    """What the report says about a set: where it came from and how many items."""
    return {"source": video_set.source, "kind": video_set.kind, "items": len(video_set),
            "models": list(video_set.models)}


def describe_digests(video_set: VideoSet) -> str:
    """One digest for a whole set's item list, so shards can check they read the same set."""
    return hashlib.sha256(json.dumps([i.digest for i in video_set.items]).encode()).hexdigest()[:16]
