"""Video files in and out: decord and Pillow read, ffmpeg writes, contact sheets preview.

In memory a video is a numpy uint8 array [T, H, W, 3] (RGB) plus its frame rate. Models see float
[B, 3, T, H, W] in [-1, 1]; `frames_to_model` and `frames_from_model` convert between the two.
torch, decord and ffmpeg-python are imported inside the functions that use them, so importing this
module stays cheap (`vidtool --help` must not pay for them).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from einops import rearrange
from PIL import Image, ImageSequence

from vidtool.atomic import atomic_path, temp_beside
from vidtool.errors import UserError

DECORD_SUFFIXES = (".mp4", ".webm", ".mov", ".mkv", ".avi")
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg")
FOLDER_FPS = 8.0
# Browsers show a GIF frame with no (or zero) delay for 100 ms, so read it the same way.
GIF_DEFAULT_DELAY_MS = 100
# Memory-safe reading: a frame larger than its reader needs is scaled down inside the decoder, to
# no less than DECODE_MARGIN times what it will be resized to (the final resize stays a Lanczos
# one from a sharper image); what a read would still hold is checked against a budget first.
DECODE_MARGIN = 2
# Bytes per native pixel that decoding one stream holds however small its output: the decoder's
# reference frames and one converted frame (decord on an 8000×8000 H.264 clip: 290 MB at 128×128).
DECODER_BYTES_PER_PIXEL = 6
LARGE_FRAME = 3840 * 2160  # pixels; a larger stream is decoded by 2 threads, not one per core
MAX_SIDE = 32768  # larger frames are no video vidtool reads (H.264's and VP9's own limits are lower)
MAX_FRAMES = 10_000_000  # about 4 days at 30 fps


@dataclass(frozen=True)
class Video:
    frames: np.ndarray  # uint8 [T, H, W, 3], RGB
    fps: float


@dataclass(frozen=True)
class _Source:
    """An opened video: when each frame starts, and a loader for chosen frames."""

    times: np.ndarray  # start of each frame in seconds, increasing
    duration: float  # seconds
    fps: float  # native rate (the average one for a GIF with uneven delays)
    load: Callable[[np.ndarray], np.ndarray]  # frame indices -> uint8 [T, H, W, 3]
    native: tuple[int, int] | None = None  # (H, W) of the stream, when known without decoding
    decoded: tuple[int, int] | None = None  # (H, W) `load` gives, when smaller than native


def _budget(max_memory: int | None) -> int:
    from vidtool.budget import host_budget

    return max_memory if max_memory is not None else host_budget()


def read_video(
    path,
    *,
    fps: float | None = None,
    size: int | tuple[int, int] | None = None,
    max_frames: int | None = None,
    start: float = 0.0,
    shrink_for: int | tuple[int, int] | None = None,
    max_memory: int | None = None,
) -> Video:
    """Read a video file (mp4/webm/mov/mkv/avi, gif) or a folder of PNG/JPG frames.

    With `fps`, output frame k is the source frame nearest to t_k = start + k/fps for every t_k
    before the end, so the duration is kept; without it every frame from `start` on is returned.
    `size` s resizes the short side to s and centre-crops s x s; (H, W) covers H x W keeping the
    aspect, then centre-crops. `max_frames` caps T. A folder's frames play at `fps` (default 8).

    Memory: frames are scaled down while decoding when `size` (or `shrink_for`, the size as in
    `size` that the caller will resize them to itself) needs less than a DECODE_MARGIN-th of them,
    so a huge frame is never held whole; a read that would still need more than `max_memory` bytes
    (default: half the available RAM) is refused with one line before anything is decoded.
    """
    _check_read_options(fps, max_frames, start)
    out_size = _target_size(size)
    path = Path(path)
    budget = _budget(max_memory)
    source = _open(path, fps, out_size or _target_size(shrink_for), budget)
    indices = _pick_frames(source, fps=fps, start=start, max_frames=max_frames)
    if len(indices) == 0:
        raise UserError(
            f"no frames in {path} from start={start:g}s (it lasts {source.duration:g}s); "
            "use an earlier start or a complete video"
        )
    _check_read(path, source, len(indices), out_size, budget)
    frames = source.load(indices)
    if out_size is not None:
        frames = cover_and_crop(frames, out_size)
    return Video(frames=frames, fps=float(fps or source.fps))


def _check_read(path: Path, source: _Source, count: int, out_size: tuple[int, int] | None, budget: int) -> None:
    """Refuse, before decoding, a read of `count` frames that would hold more than `budget` bytes: the
    decoder's working set, the decoded frames and their resized copies."""
    from vidtool.budget import shown

    if source.native is None:
        return  # a source that cannot tell its size without decoding; its opener checked what it could
    h, w = source.decoded or source.native
    need = DECODER_BYTES_PER_PIXEL * source.native[0] * source.native[1] + count * h * w * 3
    if out_size is not None:
        need += count * out_size[0] * out_size[1] * 3
    if need > budget:
        raise UserError(
            f"reading {count} frames of {path} ({source.native[0]}×{source.native[1]}) needs about {shown(need)}, "
            f"over the memory budget of {shown(budget)}; read fewer frames (--frames, --fps) or smaller ones "
            "(--size), or raise --max-memory"
        )


@dataclass(frozen=True)
class VideoInfo:
    frames: int  # at the native rate (a folder's: the `fps` it was probed with)
    fps: float
    height: int
    width: int


def probe_video(path, *, fps: float | None = None) -> VideoInfo:
    """Length, rate and frame size of a video file or frame folder: from the header where ffprobe (or
    Pillow) can read it, else from its first frame."""
    path = Path(path)
    source = _open(path, fps, (1, 1), _budget(None))  # the size from the header; a frame decoded tiny if at all
    if len(source.times) == 0:
        raise UserError(f"no frames in {path}")
    height, width = source.native or source.load(np.zeros(1, dtype=np.int64)).shape[1:3]
    return VideoInfo(frames=len(source.times), fps=float(source.fps), height=int(height), width=int(width))


def sample_frames(path, count: int, *, fps: float | None = None, shrink_for: int | tuple[int, int] | None = None,
                  max_memory: int | None = None) -> Video:
    """`count` frames spread evenly over a whole clip, first and last included, decoding only those
    (a captioning model looks at a few frames of a long clip). A folder plays at `fps` (default 8).
    `shrink_for` and `max_memory` as in `read_video`: frames are scaled down while decoding for a
    caller that resizes them to that size itself, and a read over the budget is refused."""
    if count < 1:
        raise UserError(f"need at least one frame to sample, got {count}")
    path = Path(path)
    budget = _budget(max_memory)
    source = _open(path, fps, _target_size(shrink_for), budget)
    if len(source.times) == 0:
        raise UserError(f"no frames in {path}")
    # A clip shorter than `count` repeats frames: video models such as Video-LLaVA take a fixed number.
    indices = np.round(np.linspace(0, len(source.times) - 1, count)).astype(np.int64)
    _check_read(path, source, len(indices), None, budget)
    return Video(frames=source.load(indices), fps=float(source.fps))


def read_frames(path, pick: Callable[[int], np.ndarray], *, fps: float | None = None,
                shrink_for: int | tuple[int, int] | None = None, max_memory: int | None = None) -> Video:
    """The frames `pick(frame count)` names (indices into the clip's own frames, in any order, repeats
    allowed), decoding only those: `vidtool score` reads a few frame pairs of a long clip this way.
    A folder plays at `fps` (default 8). `shrink_for` and `max_memory` as in `read_video`."""
    path = Path(path)
    budget = _budget(max_memory)
    source = _open(path, fps, _target_size(shrink_for), budget)
    if len(source.times) == 0:
        raise UserError(f"no frames in {path}")
    indices = np.clip(np.asarray(pick(len(source.times)), dtype=np.int64), 0, len(source.times) - 1)
    _check_read(path, source, len(indices), None, budget)
    return Video(frames=source.load(indices), fps=float(source.fps))


def _open(path: Path, fps: float | None, shrink_for: tuple[int, int] | None, budget: int):
    """The frame source for a file or frame folder (a folder plays at `fps`, default 8), decoding
    frames no larger than DECODE_MARGIN times `shrink_for` (H, W) needs; absurd sizes are refused."""
    if not path.exists():
        raise UserError(f"no such file: {path}")
    if path.is_dir():
        return _open_folder(path, fps or FOLDER_FPS, shrink_for, budget)
    if path.suffix.lower() == ".gif":
        return _open_gif(path, shrink_for, budget)
    if path.suffix.lower() in DECORD_SUFFIXES:
        return _open_decord(path, shrink_for, budget)
    raise UserError(
        f"cannot read {path}: unknown video type '{path.suffix}'; "
        f"use {'/'.join(s[1:] for s in DECORD_SUFFIXES)}/gif or a folder of PNG/JPG frames"
    )


def _check_read_options(fps, max_frames, start) -> None:
    if fps is not None and not fps > 0:
        raise UserError(f"fps must be positive, got {fps}")
    if max_frames is not None and max_frames < 1:
        raise UserError(f"max_frames must be at least 1, got {max_frames}")
    if not start >= 0:
        raise UserError(f"start must be 0 or more seconds, got {start}")


def _target_size(size) -> tuple[int, int] | None:
    if size is None:
        return None
    out_size = (size, size) if np.ndim(size) == 0 else tuple(size)
    if len(out_size) != 2 or min(out_size) < 1:
        raise UserError(f"size must be a positive int or (height, width), got {size}")
    return out_size


def _pick_frames(source: _Source, *, fps, start, max_frames) -> np.ndarray:
    if fps is None:
        if start >= source.duration:
            return np.zeros(0, dtype=np.int64)
        first = _nearest(source.times, np.array([start]))[0]
        return np.arange(first, len(source.times))[:max_frames]
    # t_k < duration; the epsilon keeps float error from adding a frame past the end
    count = max(0, math.ceil((source.duration - start) * fps - 1e-6))
    if max_frames is not None:
        count = min(count, max_frames)
    return _nearest(source.times, start + np.arange(count) / fps)


def _nearest(times: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Index of the frame whose start time is nearest to each t (ties go to the earlier frame)."""
    after = np.searchsorted(times, t).clip(0, len(times) - 1)
    before = (after - 1).clip(0)
    return np.where(np.abs(times[before] - t) <= np.abs(times[after] - t), before, after)


def _decode_size(native: tuple[int, int] | None, shrink_for: tuple[int, int] | None) -> tuple[int, int] | None:
    """The (H, W) to decode a `native` frame at so that it still covers DECODE_MARGIN × `shrink_for`
    with the aspect kept; None (native) when that is no smaller."""
    if native is None or shrink_for is None:
        return None
    scale = DECODE_MARGIN * max(shrink_for[0] / native[0], shrink_for[1] / native[1])
    if scale >= 1:
        return None
    return max(2, math.ceil(native[0] * scale)), max(2, math.ceil(native[1] * scale))


def _check_dimensions(path: Path, native: tuple[int, int], frames: int | None, budget: int) -> None:
    """Refuse a stream whose frame size or length no reader could hold, before decoding any of it."""
    from vidtool.budget import shown

    h, w = native
    if min(h, w) < 1 or max(h, w) > MAX_SIDE or (frames is not None and frames > MAX_FRAMES):
        length = f", {frames} frames" if frames is not None else ""
        raise UserError(f"{path} holds {h}×{w} frames{length}: larger than any video vidtool reads "
                        f"(at most {MAX_SIDE} px a side and {MAX_FRAMES} frames)")
    need = DECODER_BYTES_PER_PIXEL * h * w
    if need > budget:
        raise UserError(f"decoding {path} ({h}×{w} frames) needs about {shown(need)} even for one frame, over the "
                        f"memory budget of {shown(budget)}; raise --max-memory or shrink the video first")


def _probe_stream(path: Path) -> tuple[tuple[int, int], int | None] | None:
    """((H, W), frame count or None) of the first video stream from its header (ffprobe, in a child
    process: whatever a hostile header makes it allocate is not ours), or None when ffprobe cannot
    tell (decord then opens it and reports what is wrong). ffprobe costs a process start (~80 ms on
    2 cores), so each file version is probed once per process."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return _probe_file(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=4096)
def _probe_file(path: str, size: int, mtime_ns: int) -> tuple[tuple[int, int], int | None] | None:
    import ffmpeg

    try:
        info = ffmpeg.probe(path, v="error", select_streams="v:0")
        stream = info["streams"][0]
        native = int(stream["height"]), int(stream["width"])
    except (ffmpeg.Error, OSError, KeyError, IndexError, ValueError, TypeError):
        return None
    try:
        frames = int(stream["nb_frames"])
    except (KeyError, ValueError, TypeError):
        frames = None
    return native, frames


def _open_decord(path: Path, shrink_for: tuple[int, int] | None = None, budget: int | None = None) -> _Source:
    import decord

    probed = _probe_stream(path)
    native = probed[0] if probed else None
    if probed:
        _check_dimensions(path, *probed, _budget(budget))
    decoded = _decode_size(native, shrink_for)
    scaled = {} if decoded is None else {"height": decoded[0], "width": decoded[1]}
    if native is not None and native[0] * native[1] > LARGE_FRAME:
        scaled["num_threads"] = 2  # each decoding thread holds frames of its own: bound them on many-core hosts
    # ffmpeg inside decord would otherwise print its own complaints about a bad file on stderr
    decord.logging.set_level(decord.logging.QUIET)
    try:
        with _native_stderr_silenced():  # decord's C++ opener logs past QUIET; our error says it all
            reader = decord.VideoReader(str(path), ctx=decord.cpu(0), **scaled)
        fps, count = reader.get_avg_fps(), len(reader)
        if count > MAX_FRAMES:
            _check_dimensions(path, native or (1, 1), count, _budget(budget))
        # decord takes linesize / width as the channel count, so at a few narrow widths (2-8, 12,
        # 16, 24, 48, 72 px seen) where ffmpeg pads each RGB row, a frame comes out as [H, W, 4+]
        # and get_batch fails; those frames are read one by one and the padding cut off.
        row_padded = count > 0 and reader[0].shape[2] != 3
    except (RuntimeError, decord.DECORDError) as error:
        raise UserError(_cannot_decode(path, error)) from error
    if not fps > 0:
        raise UserError(_cannot_decode(path, "the stream has no frame rate"))

    def load(indices: np.ndarray) -> np.ndarray:
        try:
            if not row_padded:
                return reader.get_batch(indices.tolist()).asnumpy()
            return np.stack([_unpad_rows(reader[int(i)].asnumpy()) for i in indices])
        except (RuntimeError, decord.DECORDError) as error:
            raise UserError(_cannot_decode(path, error)) from error

    return _Source(times=np.arange(count) / fps, duration=count / fps, fps=fps, load=load, native=native,
                   decoded=decoded)


def _unpad_rows(frame: np.ndarray) -> np.ndarray:
    w = frame.shape[1]
    rows = rearrange(frame, "h w c -> h (w c)")[:, : w * 3]
    return rearrange(rows, "h (w c) -> h w c", c=3)


@contextlib.contextmanager
def _native_stderr_silenced():
    """Point file descriptor 2 at /dev/null for native code that writes to it directly."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _shrunk(image: Image.Image, decoded: tuple[int, int] | None) -> np.ndarray:
    """An RGB frame as uint8 [H, W, 3], scaled to `decoded` (H, W) first when that is given."""
    rgb = image.convert("RGB")
    if decoded is not None and rgb.size != (decoded[1], decoded[0]):
        rgb = rgb.resize((decoded[1], decoded[0]), Image.Resampling.LANCZOS)
    return np.asarray(rgb)


def _open_gif(path: Path, shrink_for: tuple[int, int] | None = None, budget: int | None = None) -> _Source:
    from vidtool.budget import shown

    budget = _budget(budget)
    try:
        with Image.open(path) as gif:
            native = gif.size[1], gif.size[0]
            _check_dimensions(path, native, None, budget)
            decoded = _decode_size(native, shrink_for)
            # Every frame is kept (a GIF decodes only in order): refuse before decoding what will not fit.
            h, w = decoded or native
            need = DECODER_BYTES_PER_PIXEL * native[0] * native[1] + getattr(gif, "n_frames", 1) * h * w * 3
            if need > budget:
                raise UserError(f"reading {path} ({gif.n_frames} frames of {native[0]}×{native[1]}) needs about "
                                f"{shown(need)}, over the memory budget of {shown(budget)}; shrink it first, read it "
                                "at a smaller --size, or raise --max-memory")
            frames, delays = [], []
            for frame in ImageSequence.Iterator(gif):
                frames.append(_shrunk(frame, decoded))
                delays.append(frame.info.get("duration") or GIF_DEFAULT_DELAY_MS)
    except (OSError, EOFError, Image.DecompressionBombError) as error:
        raise UserError(_cannot_decode(path, error)) from error
    ends = np.cumsum(delays) / 1000.0
    return _Source(
        times=np.concatenate([[0.0], ends[:-1]]),
        duration=float(ends[-1]),
        fps=len(delays) / float(ends[-1]),
        load=lambda indices: np.stack([frames[i] for i in indices]),
        native=native,
        decoded=decoded,
    )


def _open_folder(path: Path, fps: float, shrink_for: tuple[int, int] | None = None,
                 budget: int | None = None) -> _Source:
    files = sorted(
        (f for f in path.iterdir() if f.suffix.lower() in FRAME_SUFFIXES), key=_natural_key
    )
    if not files:
        raise UserError(
            f"no PNG/JPG frames in folder {path}; put frame images (frame1.png, ...) in it"
        )
    native = None
    with contextlib.suppress(OSError, Image.DecompressionBombError):
        with Image.open(files[0]) as first:  # the header only
            native = first.size[1], first.size[0]
    if native is not None:
        _check_dimensions(path, native, None, _budget(budget))
    decoded = _decode_size(native, shrink_for)

    def load(indices: np.ndarray) -> np.ndarray:
        frames, sizes = [], set()
        for i in indices:
            try:
                with Image.open(files[i]) as image:
                    sizes.add((image.size[1], image.size[0], 3))
                    if len(sizes) > 1:
                        break
                    frames.append(_shrunk(image, decoded))
            except (OSError, Image.DecompressionBombError) as error:
                reason = _first_line(error)
                raise UserError(f"cannot read frame image {files[i]}: {reason}") from error
        if len(sizes) > 1:
            raise UserError(
                f"frames in {path} differ in size ({sorted(sizes)}); make them all the same size"
            )
        return np.stack(frames)

    return _Source(times=np.arange(len(files)) / fps, duration=len(files) / fps, fps=fps, load=load,
                   native=native, decoded=decoded)


def _natural_key(file: Path) -> list:
    """frame2.png before frame10.png: digit runs compare as numbers."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", file.name)]


def _cannot_decode(path: Path, reason) -> str:
    return f"cannot decode video {path}: {_first_line(reason)}; is it a complete mp4/webm/mov/gif?"


def _first_line(reason) -> str:
    lines = str(reason).strip().splitlines() or [type(reason).__name__]
    # decord prefixes its messages with "[hh:mm:ss] /its/source/file.cc:123: ", noise to a user
    return re.sub(r"^\[[\d:]+\] \S+:\d+: ", "", lines[0])


def cover_and_crop(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 [T, H, W, 3] resized to cover `size` (H, W) with the aspect kept, then centre-cropped to it."""
    out_h, out_w = size
    h, w = frames.shape[1:3]
    if (h, w) == size:
        return frames
    # Cropping the source to the target aspect first means one resampling step, with the crop box
    # at sub-pixel precision; LANCZOS in Pillow widens its kernel when shrinking, so it averages
    # like an area filter instead of aliasing.
    scale = max(out_h / h, out_w / w)
    crop_h, crop_w = out_h / scale, out_w / scale
    box = ((w - crop_w) / 2, (h - crop_h) / 2, (w + crop_w) / 2, (h + crop_h) / 2)
    return np.stack([
        np.asarray(Image.fromarray(frame).resize((out_w, out_h), Image.Resampling.LANCZOS, box=box))
        for frame in frames
    ])


def short_side_shape(height: int, width: int, short: int, multiple: int = 1) -> tuple[int, int]:
    """(H, W) of a `height` x `width` frame whose short side is resized to `short`, aspect kept, each
    side rounded to the nearest multiple of `multiple` (at least one multiple)."""
    scale = short / min(height, width)
    return tuple(max(multiple, round(side * scale / multiple) * multiple) for side in (height, width))


def centre_crop(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The middle `size` (H, W) of uint8 [T, H, W, 3] frames."""
    h, w = frames.shape[1:3]
    out_h, out_w = size
    if out_h > h or out_w > w:
        raise UserError(f"cannot crop {out_h}×{out_w} from {h}×{w} frames; pass a smaller --crop or a larger --size")
    top, left = (h - out_h) // 2, (w - out_w) // 2
    return frames[:, top:top + out_h, left:left + out_w]


# Containers ffmpeg writes, by extension: (muxer, encoder, extra encoder options). H.264 in mp4/mov
# plays in browsers and players; VP9 is webm's codec ("b:v" 0 makes its crf a constant-quality target).
FFMPEG_FORMATS = {
    ".mp4": ("mp4", "libx264", {"movflags": "+faststart"}),
    ".mov": ("mov", "libx264", {"movflags": "+faststart"}),
    ".webm": ("webm", "libvpx-vp9", {"b:v": 0, "row-mt": 1}),
}
WRITE_SUFFIXES = (*FFMPEG_FORMATS, ".gif", ".png")


def write_video(path, frames, fps: float, *, crf: int = 12, preset: str = "medium") -> None:
    """Write uint8 [T, H, W, 3] frames by extension: .mp4 or .mov (H.264), .webm (VP9), .gif, or .png
    (contact sheet).

    The H.264 files are yuv420p with the index up front, so browsers play them. yuv420p needs even
    sides: an odd height or width gains one repeated last row or column. At the default crf 12 a
    smooth clip reads back at about 42 dB PSNR; even lossless H.264 stops near 44 dB, because yuv420p
    halves the colour resolution and the RGB conversion on reading rounds, so a lower crf buys little.
    `write_mp4s` writes many files in one ffmpeg run. Identical consecutive GIF frames are merged
    into one longer frame (Pillow does this), so read a GIF back with `fps` to recover T.
    """
    path = Path(path)
    frames = _check_frames(frames)
    if not fps > 0:
        raise UserError(f"fps must be positive, got {fps}")
    suffix = path.suffix.lower()
    if suffix in FFMPEG_FORMATS:
        write_mp4s([(path, frames)], fps, crf=crf, preset=preset)
    elif suffix == ".gif":
        _write_gif(path, frames, fps)
    elif suffix == ".png":
        write_contact_sheet(path, frames)
    else:
        raise UserError(
            f"cannot write {path}: unknown extension '{path.suffix}'; use {', '.join(WRITE_SUFFIXES)}"
        )


def _check_frames(frames) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or 0 in frames.shape:
        raise ValueError(
            f"expected uint8 frames [T, H, W, 3] with T, H, W > 0, got {frames.dtype} {frames.shape}"
        )
    return frames


def write_mp4s(
    items: list[tuple[str | os.PathLike, np.ndarray]],
    fps: float,
    *,
    crf: int = 12,
    preset: str = "medium",
) -> None:
    """Write each (path, uint8 [T, H, W, 3] frames) item as a video file (.mp4, .mov or .webm, by
    its extension), all in one ffmpeg run. The frames may also be an iterator of such chunks of one
    size, written out as they come, so a clip longer than memory holds never is in memory whole.

    Starting ffmpeg takes 0.1-0.2 s (it links some 200 libraries), far longer than encoding a
    16-frame 64x64 clip, so many clips are written in one call: each gets its own input and
    encoder, so every file is a standalone video as `write_video` describes (it writes through
    here, one item at a time). Each file is written atomically; if ffmpeg fails, none is. The raw
    frames wait beside their output under a temp name (`vidtool.atomic`), and ffmpeg is killed
    with this process, so a killed write leaves nothing that the next one does not sweep.
    """
    import ffmpeg

    if not fps > 0:
        raise UserError(f"fps must be positive, got {fps}")
    if not items:
        return
    # Dozens of encoders in one batch already use every core; one clip alone lets libx264 pick its
    # thread count (0 = by core count, ffmpeg's default), so a long video is not held to one core.
    threads = 1 if len(items) > 1 else 0
    with contextlib.ExitStack() as temps:
        outputs = []
        for path, frames in items:
            path = Path(path)
            if path.suffix.lower() not in FFMPEG_FORMATS:
                raise UserError(f"cannot write {path} with ffmpeg; use {', '.join(FFMPEG_FORMATS)}")
            muxer, codec, extra = FFMPEG_FORMATS[path.suffix.lower()]
            tmp = temps.enter_context(atomic_path(path))
            raw = temps.enter_context(temp_beside(path, suffix=".rgb"))
            h, w = _write_raw(raw, [frames] if isinstance(frames, (np.ndarray, list, tuple)) else frames)
            clip = ffmpeg.input(
                str(raw), format="rawvideo", pix_fmt="rgb24", s=f"{w}x{h}", framerate=fps
            )
            # `.video` has ffmpeg-python map every output to its own input: it leaves the first
            # one unmapped otherwise, and ffmpeg would fill it with the largest input. The temp
            # file ends in .tmp, so the container is named rather than guessed.
            speed = {"preset": preset} if codec == "libx264" else {}
            outputs.append(clip.video.output(
                str(tmp), format=muxer, vcodec=codec, pix_fmt="yuv420p", crf=crf,
                threads=threads, **speed, **extra,
            ))
        command = (
            ffmpeg.merge_outputs(*outputs)
            .global_args("-loglevel", "error", "-nostdin")
            .overwrite_output()
        )
        try:
            with _stop_signals_held():
                process = subprocess.Popen(command.compile(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                           stderr=subprocess.PIPE, preexec_fn=die_with_parent())  # noqa: PLW1509 (two libc calls)
        except FileNotFoundError as error:
            raise UserError("ffmpeg is not on PATH; install it (apt-get install ffmpeg)") from error
        with process:
            try:
                _, stderr = process.communicate()
            except BaseException:  # SIGTERM's SystemExit, Ctrl-C: ffmpeg goes first, then the temp files
                process.kill()
                raise
        if process.returncode != 0:
            # with -loglevel error the first line is the cause; later ones are consequences
            lines = stderr.decode(errors="replace").strip().splitlines() or ["no message"]
            first = items[0][0]
            which = first if len(items) == 1 else f"{len(items)} clips ({first} first)"
            raise UserError(f"ffmpeg could not write {which}: {lines[0]}")


def _write_raw(raw: Path, chunks) -> tuple[int, int]:
    """Append each uint8 [T, H, W, 3] chunk to `raw` as rgb24, sides made even for yuv420p (the last
    row or column repeated); returns the (even) frame size."""
    size = None
    with open(raw, "wb") as sink:
        for chunk in chunks:
            chunk = _check_frames(chunk)
            if size is None:
                size = chunk.shape[1:3]
            elif chunk.shape[1:3] != size:  # compared before padding: a 63-wide chunk is not a 64-wide one
                raise ValueError(f"frames of {chunk.shape[1]}x{chunk.shape[2]} after frames of {size[0]}x{size[1]}")
            odd = ((0, 0), (0, chunk.shape[1] % 2), (0, chunk.shape[2] % 2), (0, 0))
            chunk = np.pad(chunk, odd, mode="edge")
            sink.write(chunk.tobytes())
    if size is None:
        raise ValueError("no frames to write")
    return size[0] + size[0] % 2, size[1] + size[1] % 2


_STOP_SIGNALS = {signal.SIGTERM, signal.SIGHUP, signal.SIGINT}


@contextlib.contextmanager
def _stop_signals_held():
    """Hold SIGTERM/SIGHUP/SIGINT while ffmpeg is forked: their handlers raise, and an exception raised
    inside the interpreter's fork callbacks is printed and dropped. They arrive right after."""
    held = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def die_with_parent() -> Callable[[], None]:
    """A `preexec_fn` that unblocks the signals `_stop_signals_held` held (the child inherits the mask)
    and, on Linux, has the kernel send the child SIGKILL when this process dies (even by `kill -9`),
    so an orphaned ffmpeg does not go on writing. libc is looked up here, in the parent: the child
    between fork and exec makes only these calls."""
    prctl = None
    if sys.platform.startswith("linux"):
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()
    set_death_signal = 1  # PR_SET_PDEATHSIG, <linux/prctl.h>

    def preexec() -> None:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
        if prctl is not None:
            prctl(set_death_signal, signal.SIGKILL)
            if os.getppid() != parent:  # the parent died before the call: nothing would kill us now
                os._exit(1)

    return preexec


def _write_gif(path: Path, frames: np.ndarray, fps: float) -> None:
    # GIF delays are whole centiseconds, and browsers slow delays under 20 ms down to 100 ms
    delay_ms = 10 * max(2, round(100 / fps))
    images = [Image.fromarray(frame) for frame in frames]
    with atomic_path(path) as tmp:
        images[0].save(
            tmp, format="GIF", save_all=True, append_images=images[1:], duration=delay_ms, loop=0
        )


def contact_sheet(frames, columns: int | None = None, *, pad: int = 2) -> np.ndarray:
    """Frames in a grid, row by row, on white: [rows*(H+pad)+pad, columns*(W+pad)+pad, 3].

    columns defaults to ceil(sqrt(T)); rows = ceil(T / columns); unused cells stay white.
    """
    frames = _check_frames(frames)
    t, h, w, _ = frames.shape
    columns = columns or math.ceil(math.sqrt(t))
    if columns < 1:
        raise ValueError(f"columns must be at least 1, got {columns}")
    rows = math.ceil(t / columns)
    cells = np.full((rows * columns, h + pad, w + pad, 3), 255, dtype=np.uint8)
    cells[:t, pad:, pad:] = frames
    sheet = rearrange(cells, "(r c) h w ch -> (r h) (c w) ch", r=rows)
    return np.pad(sheet, ((0, pad), (0, pad), (0, 0)), constant_values=255)


def write_contact_sheet(path, frames, columns: int | None = None) -> None:
    sheet = contact_sheet(frames, columns)
    with atomic_path(path) as tmp:
        Image.fromarray(sheet).save(tmp, format="PNG")


def frames_to_model(video):
    """uint8 [B, T, H, W, 3] (torch or numpy) -> float32 torch [B, 3, T, H, W] in [-1, 1].

    Unbatched [T, H, W, 3] gives [3, T, H, W].
    """
    import torch

    video = torch.as_tensor(video)
    if video.dtype != torch.uint8 or video.ndim not in (4, 5) or video.shape[-1] != 3:
        raise ValueError(
            f"expected uint8 [B, T, H, W, 3] or [T, H, W, 3], got {video.dtype} {list(video.shape)}"
        )
    pattern = "b t h w c -> b c t h w" if video.ndim == 5 else "t h w c -> c t h w"
    return rearrange(video.float(), pattern) / 127.5 - 1


def frames_from_model(x):
    """float [B, 3, T, H, W] in [-1, 1] -> uint8 torch [B, T, H, W, 3] on x's device; inverts
    `frames_to_model` exactly. Unbatched [3, T, H, W] gives [T, H, W, 3]."""
    import torch

    if x.ndim not in (4, 5) or x.shape[-4] != 3:
        raise ValueError(f"expected [B, 3, T, H, W] or [3, T, H, W], got {tuple(x.shape)}")
    pattern = "b c t h w -> b t h w c" if x.ndim == 5 else "c t h w -> t h w c"
    pixels = ((x.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return rearrange(pixels, pattern).contiguous()


def psnr(a, b) -> float:
    """Peak signal-to-noise ratio in dB of two uint8 arrays (data range 255)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"psnr needs equal shapes, got {a.shape} and {b.shape}")
    mse = np.mean((a - b) ** 2)
    # Identical arrays have infinite PSNR; a finite cap keeps means over clips and comparisons sane.
    return 100.0 if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def read_image(path: Path, size: int | tuple[int, int]) -> np.ndarray:
    """An image file -> uint8 [1, H, W, 3]: resized to cover `size` (s or (H, W)), centre-cropped to it."""
    from PIL import UnidentifiedImageError

    if not Path(path).is_file():
        raise UserError(f"no such image: {path}")
    try:
        with Image.open(path) as im:
            rgb = np.array(im.convert("RGB"))  # writable: torch.from_numpy warns on read-only arrays
    except (UnidentifiedImageError, OSError) as e:
        raise UserError(f"{path} is not a readable image ({e}); pass a .png or .jpg") from e
    return cover_and_crop(rgb[None], _target_size(size))
