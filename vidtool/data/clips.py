"""`ClipDataset`: fixed-length training clips read through a manifest, and `collate_clips` to batch them."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np
import torch

from vidtool.data.manifest import read_manifest, resolve
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
        # Walking forward from `index` makes the substitute the same in every worker and epoch.
        for attempt in range(min(self.max_attempts, len(self))):
            i = (index + attempt) % len(self)
            if i in self.broken:
                continue
            record = self.records[i]
            try:
                video = self._read(record)
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

    def _read(self, record: dict) -> np.ndarray:
        # Imported and opened here, inside __getitem__, so every DataLoader worker creates its own
        # decord reader after the fork: decoder state inherited across a fork is not safe to use.
        from vidtool.video import read_video

        path = resolve(self.manifest, record["path"])
        native = record.get("fps")
        if path.is_dir() and native:
            # A folder of frames has no rate of its own and read_video plays it at the rate it is
            # given, so it is read at the record's rate and resampled here, nearest frame as for files.
            step = native / (self.fps or native)
            wanted = round((self.frames - 1) * step) + 1
            frames = read_video(path, fps=native, size=self.size, max_frames=wanted).frames
            count = min(self.frames, math.ceil(len(frames) / step - 1e-6))
            frames = frames[np.minimum(np.round(np.arange(count) * step).astype(np.int64), len(frames) - 1)]
        else:
            # A GIF writer merges repeated frames into one longer frame; reading at the record's
            # rate puts them back. Other files know their own rate.
            fps = self.fps or (native if path.suffix.lower() == ".gif" else None)
            frames = read_video(path, fps=fps, size=self.size, max_frames=self.frames).frames
        if len(frames) < self.frames:
            # Batches need one T. Holding the last frame reads as the motion stopping, where black
            # frames would teach a model that clips fade out.
            frames = np.concatenate([frames, np.repeat(frames[-1:], self.frames - len(frames), axis=0)])
        return frames


def collate_clips(items: list[dict]) -> dict:
    """Stack items into dict(video=float [B,3,T,H,W] in [-1,1], caption=list[str], index=LongTensor).

    Labels, when every item has one, become a LongTensor if they are integers and a list otherwise.
    """
    from vidtool.video import frames_to_model

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
