"""`ClipDataset`: fixed-length training clips read through a manifest; `ClipSets`: several manifests
as one dataset that also reads a clip at a bucket's shape (vidtool.data.buckets); `collate_clips`
to batch them."""

from __future__ import annotations

import bisect
import logging
import math
import os
from pathlib import Path

import numpy as np
import torch

from vidtool.data.buckets import Bucket, ClipShape
from vidtool.data.manifest import SHAPE_KEYS, read_manifest, resolve
from vidtool.errors import UserError

logger = logging.getLogger(__name__)


class ClipDataset(torch.utils.data.Dataset):
    """Items are dict(video=uint8 [T,H,W,3], caption=str, index=int, source=(manifest path, record),
    and label when the record has one).

    `frames` is T; `fps` resamples in time (None: the clip's own rate); `size` as in `read_video`
    (an int: short side resized to it, then a centre square crop). A clip that fails to decode is
    logged once and replaced by the next decodable one, trying at most `max_attempts` clips, so a
    few bad files cost a warning rather than the epoch.
    """

    def __init__(
        self,
        manifest: str | os.PathLike,
        *,
        frames: int = 16,
        fps: float | None = None,
        size: int | tuple[int, int] | None = None,
        max_attempts: int = 16,
    ):
        if frames < 1 or max_attempts < 1:
            raise UserError(f"frames and max_attempts must be at least 1, got {frames} and {max_attempts}")
        self.manifest = Path(manifest)
        self.records = read_manifest(self.manifest)
        if not self.records:
            raise UserError(f"manifest {self.manifest} has no records; add clips or pick another manifest")
        self.frames, self.fps, self.size, self.max_attempts = frames, fps, size, max_attempts
        # Indices known not to decode, per process: each DataLoader worker learns (and warns) on its own.
        self.broken: set[int] = set()

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        return self.read(index, self.frames, self.size)

    def read(self, index: int, frames: int, size: int | tuple[int, int] | None) -> dict:
        """Item `index` with T = `frames`, at `size` (as the constructor's); see the class docstring."""
        # Walking forward from `index` makes the substitute the same in every worker and epoch.
        for attempt in range(min(self.max_attempts, len(self))):
            i = (index + attempt) % len(self)
            if i in self.broken:
                continue
            record = self.records[i]
            try:
                video = self._read(record, frames, size)
            except UserError as error:
                self.broken.add(i)
                logger.warning("skipping clip %s: %s", record["path"], error)
                continue
            item = {"video": torch.from_numpy(video), "caption": record.get("caption", ""), "index": i,
                    "source": (self.manifest, record)}
            if "label" in record:
                item["label"] = record["label"]
            return item
        raise UserError(
            f"none of {min(self.max_attempts, len(self))} clips from index {index} in {self.manifest} "
            "decodes; check the files the manifest names"
        )

    def shape(self, index: int) -> ClipShape | None:
        """The clip's length, rate and size: from the record (make-dataset writes them), else probed
        from the file; None, with a warning, for a clip that cannot be opened."""
        from vidtool.video import FOLDER_FPS, probe_video

        record = self.records[index]
        if all(record.get(key) is not None for key in SHAPE_KEYS):
            return ClipShape(**{key: record[key] for key in SHAPE_KEYS})
        path = resolve(self.manifest, record["path"])
        try:
            # A frame folder plays at the record's rate, as _read plays it.
            info = probe_video(path, fps=record.get("fps") or FOLDER_FPS if path.is_dir() else None)
        except UserError as error:
            logger.warning("skipping clip %s: %s", record["path"], error)
            return None
        return ClipShape(frames=info.frames, fps=info.fps, height=info.height, width=info.width)

    def _read(self, record: dict, frames_wanted: int, size) -> np.ndarray:
        # Imported and opened here, inside __getitem__, so every DataLoader worker creates its own
        # decord reader after the fork: decoder state inherited across a fork is not safe to use.
        from vidtool.video import read_video

        path = resolve(self.manifest, record["path"])
        native = record.get("fps")
        if path.is_dir() and native:
            # A folder of frames has no rate of its own and read_video plays it at the rate it is
            # given, so it is read at the record's rate and resampled here, nearest frame as for files.
            step = native / (self.fps or native)
            wanted = round((frames_wanted - 1) * step) + 1
            frames = read_video(path, fps=native, size=size, max_frames=wanted).frames
            count = min(frames_wanted, math.ceil(len(frames) / step - 1e-6))
            frames = frames[np.minimum(np.round(np.arange(count) * step).astype(np.int64), len(frames) - 1)]
        else:
            # A GIF writer merges repeated frames into one longer frame; reading at the record's
            # rate puts them back. Other files know their own rate.
            fps = self.fps or (native if path.suffix.lower() == ".gif" else None)
            frames = read_video(path, fps=fps, size=size, max_frames=frames_wanted).frames
        if len(frames) < frames_wanted:
            # Batches need one T. Holding the last frame reads as the motion stopping, where black
            # frames would teach a model that clips fade out.
            frames = np.concatenate([frames, np.repeat(frames[-1:], frames_wanted - len(frames), axis=0)])
        return frames


class ClipSets(torch.utils.data.ConcatDataset):
    """Clip manifests as one dataset, whose clips bucketed training reads at their bucket's shape."""

    datasets: list[ClipDataset]

    def shapes(self) -> list[ClipShape | None]:
        return [dataset.shape(i) for dataset in self.datasets for i in range(len(dataset))]

    def read(self, index: int, bucket: Bucket, image: bool = False) -> dict:
        """Item `index` as `bucket`'s shape (covered and centre-cropped, cut or held to its length);
        `image` marks it for collate_clips to split into single frames."""
        part = bisect.bisect_right(self.cumulative_sizes, index)
        local = index - (self.cumulative_sizes[part - 1] if part else 0)
        item = self.datasets[part].read(local, bucket.frames, bucket.size)
        return {**item, "image": True} if image else item


def collate_clips(items: list[dict]) -> dict:
    """Stack items into dict(video=float [B,3,T,H,W] in [-1,1], caption=list[str], index=LongTensor).

    Labels, when every item has one, become a LongTensor if they are integers and a list otherwise.
    Items marked `image` (ClipSets.read) become a batch of B*T single frames, [B*T,3,1,H,W], each with
    its clip's caption, index and label: the image batches of joint training (Cross-modal Video VAE §4.1).
    """
    from vidtool.video import frames_to_model

    if items and all(item.get("image") for item in items):
        items = [{**item, "video": frame[None]} for item in items for frame in item["video"]]
    batch = {
        "video": frames_to_model(torch.stack([item["video"] for item in items])),
        "caption": [item["caption"] for item in items],
        "index": torch.tensor([item["index"] for item in items], dtype=torch.long),
    }
    if all("label" in item for item in items):
        labels = [item["label"] for item in items]
        is_int = all(isinstance(label, int) and not isinstance(label, bool) for label in labels)
        batch["label"] = torch.tensor(labels, dtype=torch.long) if is_int else labels
    return batch
