"""Cutting long videos into shots (`vidtool cut-scenes`): PySceneDetect finds the cuts, ffmpeg writes
each shot as its own clip.

Detection runs PySceneDetect on its OpenCV backend: `adaptive` (AdaptiveDetector, the default: a
frame's content change against the average of its neighbours, so a fast pan does not read as a
cut) or `content` (ContentDetector: a fixed threshold on the HSV + edge change between frames).
A shot spans frames [start_frame, end_frame) of the source, at its own frame numbering.

Each shot is re-encoded (H.264, yuv420p, no audio) from an input seek to half a frame before its
first frame and `-frames:v` its length: ffmpeg's input seek decodes from the previous key frame and
drops frames before the seek point, so every clip begins exactly at its shot's first frame and holds
exactly its frames; a stream copy could only cut at key frames.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from vidtool.errors import UserError

DETECTORS = ("adaptive", "content")
# Columns of a source record that describe the whole video, not a shot of it (`vidtool index` writes them).
WHOLE_VIDEO_KEYS = ("duration", "codec", "size", "mtime_ns", "rotation")


@dataclass(frozen=True)
class Shot:
    start_frame: int
    end_frame: int  # exclusive


@dataclass(frozen=True)
class ShotOptions:
    detector: str = "adaptive"
    threshold: float | None = None  # None: the detector's own default (adaptive 3.0, content 27.0)
    min_frames: int = 15  # no cut closer than this to the previous one (PySceneDetect's min_scene_len)
    crf: int = 18


def detect_shots(path: str | os.PathLike, options: ShotOptions) -> tuple[list[Shot], float, tuple[int, int]]:
    """(shots covering the whole video in order, frame rate, (width, height)) of a video file."""
    from scenedetect import AdaptiveDetector, ContentDetector, SceneManager, VideoOpenFailure, open_video

    if options.detector not in DETECTORS:
        raise UserError(f"--detector must be one of {', '.join(DETECTORS)}, got {options.detector!r}")
    try:
        video = open_video(str(path), backend="opencv")
    except (VideoOpenFailure, OSError) as error:
        raise UserError(f"cannot open {path} as a video: {str(error).strip() or type(error).__name__}") from None
    if options.detector == "adaptive":
        extra = {} if options.threshold is None else {"adaptive_threshold": options.threshold}
        detector = AdaptiveDetector(min_scene_len=options.min_frames, **extra)
    else:
        extra = {} if options.threshold is None else {"threshold": options.threshold}
        detector = ContentDetector(min_scene_len=options.min_frames, **extra)
    manager = SceneManager()
    manager.add_detector(detector)
    manager.detect_scenes(video=video)
    scenes = manager.get_scene_list(start_in_scene=True)
    if not scenes:
        raise UserError(f"no frames could be decoded from {path}")
    shots = [Shot(start.frame_num, end.frame_num) for start, end in scenes]
    return shots, float(video.frame_rate), tuple(video.frame_size)


def write_shot(source: Path, shot: Shot, fps: float, dest: Path, crf: int) -> None:
    """Write frames [start_frame, end_frame) of `source` to `dest` (.mp4), atomically."""
    from vidtool.atomic import atomic_path

    seek = max(0.0, (shot.start_frame - 0.5) / fps)
    with atomic_path(dest) as tmp:
        command = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-ss", f"{seek:.6f}", "-i", str(source),
                   "-map", "0:v:0", "-an", "-frames:v", str(shot.end_frame - shot.start_frame), "-c:v", "libx264",
                   "-crf", str(crf), "-preset", "fast", "-pix_fmt", "yuv420p",
                   "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-movflags", "+faststart", "-f", "mp4", str(tmp)]
        try:
            done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True)
        except FileNotFoundError:
            raise UserError("ffmpeg is not on PATH; install it (apt-get install ffmpeg)") from None
        if done.returncode != 0:
            lines = done.stderr.decode(errors="replace").strip().splitlines() or ["no message"]
            raise UserError(f"ffmpeg could not cut frames {shot.start_frame}-{shot.end_frame} of {source}: {lines[0]}")


def cut_video(source: Path, record: dict, clip_folder: Path, out_folder: Path, options: ShotOptions) -> list[dict]:
    """Detect `source`'s shots and write each as CLIP_FOLDER/NNNN.mp4; one output record per shot.

    `record` is the source's record with paths already relative to `out_folder`; each shot's record
    keeps its other fields (a caption, a label), points `source` at the video it came from and adds
    shot, start_frame, end_frame, start, end (seconds) and the clip's frames, fps, height, width."""
    shots, fps, (width, height) = detect_shots(source, options)
    base = {key: value for key, value in record.items() if key not in WHOLE_VIDEO_KEYS}
    records = []
    for number, shot in enumerate(shots):
        dest = clip_folder / f"{number:04d}.mp4"
        write_shot(source, shot, fps, dest, options.crf)
        records.append({**base, "path": os.path.relpath(dest, out_folder), "source": record["path"], "shot": number,
                        "start_frame": shot.start_frame, "end_frame": shot.end_frame,
                        "start": round(shot.start_frame / fps, 6), "end": round(shot.end_frame / fps, 6),
                        "frames": shot.end_frame - shot.start_frame, "fps": fps, "height": height, "width": width})
    return records


def video_items(source: str | os.PathLike) -> tuple[list[dict], Path]:
    """(records, the manifest their paths are relative to) for a manifest (.jsonl), a folder of
    videos (searched as `vidtool index` searches) or one video file. A folder's or file's records
    carry size and modification time, so a rewritten video is not taken from a journal."""
    from vidtool.data.index import find_videos
    from vidtool.data.manifest import read_manifest

    source = Path(source)
    if source.suffix == ".jsonl":
        return read_manifest(source), source
    if source.is_dir():
        root, videos = source, find_videos(source)
    elif source.is_file():
        root, videos = source.parent, [Path(source.name)]
    else:
        raise UserError(f"no such video, folder or manifest: {source}")
    records = []
    for video in videos:
        stat = (root / video).stat()
        records.append({"path": video.as_posix(), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns})
    return records, root / "manifest.jsonl"
