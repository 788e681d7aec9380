"""A folder of a user's own videos → manifest records with probed metadata (`vidtool index`).

Every video under the folder (by suffix, case-insensitive, recursively; hidden files and folders,
such as macOS's `._clip.mp4` resource forks, are skipped) is probed with ffprobe for its first video
stream: frame count, frame rate, height, width, duration and codec. The frame count is the number of
packets ffprobe reads from the file, not the count its header claims, so a file cut short (a killed
download) is caught here rather than halfway through a training epoch. Heights and widths are the
stored frames, which is what `vidtool.video.read_video` returns (decord applies no rotation); a phone
video's display rotation is kept as `rotation` in degrees when it has one.

A caption comes from a sidecar file beside the video with the same stem: `clip.txt` (its text), or
`clip.json` with a "caption" (or "text") string. A record has the manifest fields that
`vidtool.data.manifest` documents (`path`, `caption`, `fps`) plus `frames`, `height`, `width`,
`duration`, `codec`: what a bucketing data loader needs without opening the clip.
"""

from __future__ import annotations

import json
import os
from fractions import Fraction
from pathlib import Path

from vidtool.errors import UserError

VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".mkv", ".avi", ".gif")


def find_videos(root: str | os.PathLike) -> list[Path]:
    """Videos under `root`, as paths relative to it, in sorted order (shards rely on a stable order)."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root} is not a folder; give the folder that holds the videos")
    found = []
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        found += [Path(folder, name).relative_to(root) for name in names
                  if not name.startswith(".") and Path(name).suffix.lower() in VIDEO_SUFFIXES]
    if not found:
        raise UserError(f"no videos in {root} ({'/'.join(s[1:] for s in VIDEO_SUFFIXES)}, searched recursively)")
    return sorted(found, key=lambda p: p.as_posix())


def probe(path: str | os.PathLike) -> dict:
    """{frames, fps, height, width, duration, codec[, rotation]} of a video file's first video stream.

    Raises UserError with the reason when the file is empty, not a video, or has fewer frames than
    its header says (truncated)."""
    import ffmpeg

    path = Path(path)
    if path.stat().st_size == 0:
        raise UserError(f"{path} is empty (0 bytes)")
    try:
        # count_packets reads the whole file without decoding it: a true frame count at demux speed.
        info = ffmpeg.probe(str(path), select_streams="v:0", count_packets=None, v="error")
    except FileNotFoundError:
        raise UserError("ffprobe is not on PATH; install ffmpeg (apt-get install ffmpeg)") from None
    except ffmpeg.Error as error:
        lines = error.stderr.decode(errors="replace").strip().splitlines() or ["ffprobe failed"]
        raise UserError(f"cannot read {path}: {lines[-1].removeprefix(f'{path}: ')}") from None
    if not info.get("streams"):
        raise UserError(f"{path} has no video stream")
    stream = info["streams"][0]
    frames = int(stream.get("nb_read_packets") or 0)
    if frames == 0:
        raise UserError(f"{path} has a video stream with no frames")
    claimed = int(stream.get("nb_frames") or 0)
    if claimed > frames:
        raise UserError(f"{path} is truncated: {frames} of the {claimed} frames its header lists are in the file")
    fps = _rate(stream.get("avg_frame_rate")) or _rate(stream.get("r_frame_rate"))
    if not fps:
        raise UserError(f"{path} has no frame rate")
    duration = float(stream.get("duration") or info.get("format", {}).get("duration") or frames / fps)
    record = {"frames": frames, "fps": round(fps, 6), "height": int(stream["height"]), "width": int(stream["width"]),
              "duration": round(duration, 6), "codec": stream.get("codec_name", "unknown")}
    rotation = _rotation(stream)
    if rotation:
        record["rotation"] = rotation
    return record


def _rate(text: str | None) -> float:
    """ffprobe's 'num/den' rate as a float; '0/0' (unknown) gives 0."""
    try:
        return float(Fraction(text)) if text else 0.0
    except (ValueError, ZeroDivisionError):
        return 0.0


def _rotation(stream: dict) -> int:
    for side in stream.get("side_data_list", []):
        if "rotation" in side:
            return int(side["rotation"]) % 360
    return int(stream.get("tags", {}).get("rotate", 0)) % 360


def sidecar_caption(video: str | os.PathLike) -> str | None:
    """The caption in `video`'s sidecar .txt or .json (the .txt wins), or None when it has neither."""
    video = Path(video)
    text_file, json_file = video.with_suffix(".txt"), video.with_suffix(".json")
    if text_file.is_file():
        try:
            return text_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as error:
            raise UserError(f"cannot read caption file {text_file}: {error}") from None
    if not json_file.is_file():
        return None
    try:
        data = json.loads(json_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise UserError(f"caption file {json_file} is not readable JSON: {error}") from None
    caption = data.get("caption", data.get("text")) if isinstance(data, dict) else None
    if not isinstance(caption, str):
        raise UserError(f'caption file {json_file} has no "caption" or "text" string')
    return caption.strip()


def index_record(video: str | os.PathLike) -> dict:
    """Probed metadata and the sidecar caption of one video (no `path`: the caller places it)."""
    record = probe(video)
    caption = sidecar_caption(video)
    return record if caption is None else {"caption": caption, **record}
