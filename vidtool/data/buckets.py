"""Bucketed batching: clips of many sizes and lengths trained in batches of one shape each.

Open-Sora's design (its `Bucket` and `VariableVideoBatchSampler`): a bucket is a (height, width,
frames) shape with its own batch size; each clip goes to the largest bucket it fits, is resized to
cover the bucket's frame and centre-cropped to it (aspect ratio kept, nothing stretched), and is cut
to the bucket's length; a batch never mixes buckets.

Which bucket a clip fits (`assign_buckets`): one whose length the clip reaches (after resampling to
the training rate) and whose pixel count the clip's frame reaches, so that frames are not blown up.
Among those, as Open-Sora walks its resolutions from the largest: the highest resolution first
(buckets whose pixel counts round to the same power of two form one resolution, e.g. 64x64 and
48x80), then the most frames, then the aspect ratio nearest the clip's. A clip that fits no bucket is
left out of training.

The batch order (`BucketPlan`) is a pure function of (seed, batch number), like the plain sample
order of vidtool.train.loop: epoch e shuffles each bucket's clips with a generator seeded with
seed + e, cuts them into batches of the bucket's batch size (the last one may be short, so no clip is
dropped), and shuffles those batches. Batch n of the run is batch n mod M of epoch n div M (M
batches per epoch); the trainer hands batch k * world_size + rank of its k-th micro-batch to each
rank, so a rank always holds whole batches of one bucket, and resuming restores the batch number.

Joint image/video training (Cross-modal Video VAE §3.4 and §4.1, 8:2 video-to-image): with
`image_every` N, every N-th batch is an image batch; its clips' frames are concatenated into one
batch of single frames (T == 1), as the paper builds its image batches from sampled videos.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Sequence

import torch

from vidtool.errors import UserError

EXAMPLE = "64x64:16:8,48x80:16:8,32x32:32:8"


@dataclass(frozen=True)
class Bucket:
    height: int
    width: int
    frames: int
    batch_size: int

    @property
    def size(self) -> tuple[int, int]:
        return self.height, self.width

    @property
    def shape(self) -> str:
        """The bucket's key, HxW:T (the batch size is a training choice, not part of the shape)."""
        return f"{self.height}x{self.width}:{self.frames}"

    def __str__(self) -> str:
        return f"{self.shape}:{self.batch_size}"


@dataclass(frozen=True)
class ClipShape:
    """What bucketing needs to know of a clip: its length at its own rate, the rate, and the frame size."""

    frames: int
    fps: float
    height: int
    width: int

    def frames_at(self, fps: float | None) -> int:
        """Frames the clip yields when read at `fps` (None: its own rate), as read_video counts them."""
        if fps is None:
            return self.frames
        return max(1, math.ceil(self.frames / self.fps * fps - 1e-6))


def parse_buckets(spec: str) -> list[Bucket]:
    """'HxW:T:B,...' (height x width : frames : batch size) -> buckets, each shape once."""
    buckets = []
    for part in (p.strip() for p in spec.split(",")):
        match = re.fullmatch(r"(\d+)x(\d+):(\d+):(\d+)", part)
        if not match:
            raise UserError(f"bucket {part!r} is not HEIGHTxWIDTH:FRAMES:BATCH; e.g. --buckets {EXAMPLE}")
        bucket = Bucket(*(int(g) for g in match.groups()))
        if min(bucket.height, bucket.width) < 8 or bucket.frames < 1 or bucket.batch_size < 1:
            raise UserError(f"bucket {part}: need height and width >= 8, frames >= 1 and batch size >= 1")
        if any(b.shape == bucket.shape for b in buckets):
            raise UserError(f"bucket {bucket.shape} is listed twice; give each shape once")
        buckets.append(bucket)
    return buckets


def check_divisible(buckets: Sequence[Bucket], spatial: int, temporal: int, what: str, images: bool = False) -> None:
    """Refuse, before any clip is read, a bucket shape the model cannot take (1-frame buckets only
    for a model that takes images)."""
    for b in buckets:
        if b.height % spatial or b.width % spatial or (b.frames % temporal and not (images and b.frames == 1)):
            raise UserError(f"bucket {b.shape} does not fit {what}: sides must be multiples of {spatial} and "
                            f"frames a multiple of {temporal}")


def _resolution(bucket: Bucket) -> int:
    return round(math.log2(bucket.height * bucket.width))


def assign_buckets(shapes: Sequence[ClipShape | None], buckets: Sequence[Bucket],
                   fps: float | None = None) -> list[int | None]:
    """The index into `buckets` of each clip's bucket (None: fits none, or its shape is unknown)."""
    order = sorted(range(len(buckets)), key=lambda k: (-_resolution(buckets[k]), -buckets[k].frames))
    assignment: list[int | None] = []
    for shape in shapes:
        chosen = None
        if shape is not None:
            frames, area = shape.frames_at(fps), shape.height * shape.width
            fitting = [k for k in order if buckets[k].frames <= frames and buckets[k].height * buckets[k].width <= area]
            if fitting:
                best = buckets[fitting[0]]
                tied = [k for k in fitting if _resolution(buckets[k]) == _resolution(best)
                        and buckets[k].frames == best.frames]
                aspect = math.log(shape.height / shape.width)
                chosen = min(tied, key=lambda k: abs(math.log(buckets[k].height / buckets[k].width) - aspect))
        assignment.append(chosen)
    return assignment


@dataclass(frozen=True)
class PlannedBatch:
    indices: tuple[int, ...]  # dataset items, all of one bucket
    bucket: Bucket
    image: bool  # frames become a batch of single images (T == 1)


class BucketPlan:
    """The run's sequence of batches (see the module docstring); `batch(n)` is batch n of the run."""

    def __init__(self, buckets: Sequence[Bucket], assignment: Sequence[int | None], seed: int,
                 image_every: int | None = None):
        if image_every is not None and image_every < 1:
            raise UserError(f"image_every must be at least 1, got {image_every}")
        self.buckets, self.seed, self.image_every = list(buckets), seed, image_every
        self.assignment = list(assignment)
        self.members = [[i for i, k in enumerate(assignment) if k == b] for b in range(len(self.buckets))]
        self.per_epoch = sum(math.ceil(len(m) / b.batch_size) for m, b in zip(self.members, self.buckets))
        if self.per_epoch == 0:
            raise UserError(f"no clip fits any bucket of {','.join(map(str, self.buckets))}; add a smaller or "
                            "shorter bucket, or check the clips' sizes and lengths")
        self._epoch, self._batches = -1, []

    def counts(self) -> dict[str, int]:
        """Clips per bucket shape, and 'none' for the clips left out."""
        counts = {b.shape: len(m) for b, m in zip(self.buckets, self.members)}
        return {**counts, "none": sum(k is None for k in self.assignment)}

    def describe(self) -> str:
        """What fixes the batch order (short of the seed): a resumed run must match it."""
        images = f"; an image batch every {self.image_every}" if self.image_every else ""
        return f"buckets {','.join(map(str, self.buckets))} over {self.counts()}{images}"

    def batch(self, n: int) -> PlannedBatch:
        epoch, offset = divmod(n, self.per_epoch)
        if epoch != self._epoch:
            self._epoch, self._batches = epoch, self._epoch_batches(epoch)
        indices, bucket = self._batches[offset]
        image = self.image_every is not None and n % self.image_every == self.image_every - 1
        return PlannedBatch(indices, self.buckets[bucket], image)

    def _epoch_batches(self, epoch: int) -> list[tuple[tuple[int, ...], int]]:
        generator = torch.Generator().manual_seed(self.seed + epoch)
        batches = []
        for k, (members, bucket) in enumerate(zip(self.members, self.buckets)):
            shuffled = [members[i] for i in torch.randperm(len(members), generator=generator).tolist()]
            batches += [(tuple(shuffled[i:i + bucket.batch_size]), k)
                        for i in range(0, len(shuffled), bucket.batch_size)]
        return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
