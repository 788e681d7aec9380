"""Video-object-segmentation data sets as they ship: DAVIS and YouTube-VOS folder layouts.

    DAVIS:        ROOT/JPEGImages/480p/<video>/00000.jpg   ROOT/Annotations/480p/<video>/00000.png
                  (also Full-Resolution instead of 480p)
    YouTube-VOS:  ROOT/<split>/JPEGImages/<video>/00000.jpg  ROOT/<split>/Annotations/<video>/00000.png
                  (ROOT may also be the split folder itself), with <split>/meta.json naming each
                  object's category when the split has one.

An annotation PNG holds one colour per object: a palette index ("P" mode, as both data sets ship),
a grey level, or an RGB colour; 0 / black is the background. `read_objects` checks a video the way
a curation run needs — every frame has a mask of the frame's size, objects are not empty — and
raises `UserError` with the reason, which the stage records against that video and moves on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from vidtool.errors import UserError

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")
# The frame rates the data sets were released at: DAVIS at 24 fps; YouTube-VOS keeps every 5th
# frame of 30 fps video (6 fps) in its train/valid JPEGImages.
DEFAULT_FPS = {"davis": 24.0, "youtube-vos": 6.0}


@dataclass(frozen=True)
class VosVideo:
    name: str
    frames_dir: Path
    masks_dir: Path


@dataclass(frozen=True)
class VosLayout:
    kind: str  # "davis" or "youtube-vos"
    videos: tuple[VosVideo, ...]
    categories: dict  # video -> {object id (str) -> category}, from YouTube-VOS meta.json; else empty


def find_layout(root: str | Path, *, layout: str = "auto", resolution: str = "480p", split: str = "train") -> VosLayout:
    """The videos of a DAVIS or YouTube-VOS folder, sorted by name (the order shards split)."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"no such data set folder: {root}")
    if layout not in ("auto", "davis", "youtube-vos"):
        raise UserError(f"--layout must be auto, davis or youtube-vos, got {layout!r}")
    davis = root / "JPEGImages" / resolution
    davis_like = any((root / "JPEGImages" / r).is_dir() for r in (resolution, "480p", "Full-Resolution"))
    if layout == "davis" or (layout == "auto" and davis_like):
        if not davis.is_dir():
            have = sorted(p.name for p in (root / "JPEGImages").iterdir()) if (root / "JPEGImages").is_dir() else []
            raise UserError(f"{root} has no JPEGImages/{resolution}; DAVIS resolutions here: {', '.join(have) or 'none'} "
                            "(--resolution 480p or Full-Resolution)")
        return VosLayout("davis", _videos(davis, root / "Annotations" / resolution), {})
    base = root / split if (root / split / "JPEGImages").is_dir() else root
    if not (base / "JPEGImages").is_dir():
        raise UserError(f"{root} is neither a DAVIS folder (JPEGImages/{resolution}/<video>/) nor a YouTube-VOS split "
                        f"({split}/JPEGImages/<video>/); pass the data set's root folder")
    return VosLayout("youtube-vos", _videos(base / "JPEGImages", base / "Annotations"), _meta_categories(base / "meta.json"))


def _videos(frames_root: Path, masks_root: Path) -> tuple[VosVideo, ...]:
    videos = tuple(VosVideo(p.name, p, masks_root / p.name) for p in sorted(frames_root.iterdir()) if p.is_dir())
    if not videos:
        raise UserError(f"{frames_root} holds no video folders")
    return videos


def _meta_categories(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        return {video: {str(obj): info.get("category") for obj, info in entry.get("objects", {}).items() if info.get("category")}
                for video, entry in meta["videos"].items()}
    except (json.JSONDecodeError, KeyError, AttributeError, TypeError) as e:
        raise UserError(f"{path}: not a YouTube-VOS meta.json ({e.__class__.__name__}); fix or remove it") from None


@dataclass
class VideoObjects:
    frames: list[Path]  # the frame files, in order
    size: tuple[int, int]  # (H, W)
    masks: dict[int, np.ndarray]  # object id -> uint8 [T, H, W], 1 on the object


def read_objects(video: VosVideo) -> VideoObjects:
    """Frames and per-object binary mask sequences; a broken layout raises UserError saying what is wrong."""
    frames = _files(video.frames_dir, FRAME_SUFFIXES)
    if not frames:
        raise UserError(f"{video.name}: no frames (jpg/png) in {video.frames_dir}")
    if not video.masks_dir.is_dir():
        raise UserError(f"{video.name}: no annotation folder {video.masks_dir}")
    masks = {p.stem: p for p in _files(video.masks_dir, (".png",))}
    unmasked = [f.name for f in frames if f.stem not in masks]
    if unmasked:
        raise UserError(f"{video.name}: {len(unmasked)} of {len(frames)} frames have no mask (first: {unmasked[0]}); "
                        "only fully annotated videos make samples")
    extra = sorted(set(masks) - {f.stem for f in frames})
    if extra:
        raise UserError(f"{video.name}: {len(extra)} masks have no frame (first: {extra[0]}.png)")
    labels = []
    size = None
    colours: dict[tuple, int] = {}
    for frame in frames:
        with Image.open(frame) as image:
            frame_size = image.size
        size = size or frame_size
        if frame_size != size:
            raise UserError(f"{video.name}: frame {frame.name} is {frame_size[0]}×{frame_size[1]}, the first is {size[0]}×{size[1]}")
        label = _label_map(masks[frame.stem], colours)
        if (label.shape[1], label.shape[0]) != frame_size:
            raise UserError(f"{video.name}: mask {frame.stem}.png is {label.shape[1]}×{label.shape[0]} but its frame "
                            f"{frame.name} is {frame_size[0]}×{frame_size[1]}")
        labels.append(label)
    stack = np.stack(labels)
    ids = [int(i) for i in np.unique(stack) if i != 0]
    return VideoObjects(frames, (size[1], size[0]), {i: (stack == i).astype(np.uint8) for i in ids})


def _files(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if p.suffix.lower() in suffixes and not p.name.startswith(".")),
                  key=lambda p: (len(p.stem), p.stem))


def _label_map(path: Path, colours: dict[tuple, int]) -> np.ndarray:
    """Object ids of a mask PNG: a palette index or grey level as it is; RGB colours numbered as they first
    appear (frames in order, colours sorted within a frame), shared through `colours`; black is background."""
    try:
        with Image.open(path) as image:
            mode = image.mode
            array = np.asarray(image.convert("RGB") if mode not in ("P", "L", "1", "I;16", "I") else image)
    except OSError as e:
        raise UserError(f"{path}: not a readable PNG ({e})") from None
    if mode in ("P", "L", "1", "I;16", "I"):
        return array.astype(np.int32)
    flat = array.reshape(-1, 3)
    unique, inverse = np.unique(flat, axis=0, return_inverse=True)
    ids = np.zeros(len(unique), np.int32)
    for n, colour in enumerate(map(tuple, unique.tolist())):
        if colour != (0, 0, 0):
            ids[n] = colours.setdefault(colour, len(colours) + 1)
    return ids[inverse.reshape(-1)].reshape(array.shape[:2])
