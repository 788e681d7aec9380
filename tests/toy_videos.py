"""Small synthetic videos the tests share: a moving square for the autoencoders, and a map-style
clip dataset (item i a function of i alone) with its collate for the trainer tests."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset


def moving_square(batch: int = 2, frames: int = 8, size: int = 32) -> torch.Tensor:
    """A bright square sliding right 2 px per frame over a dark horizontal gradient, in [-1, 1]."""
    video = torch.linspace(-0.8, -0.2, size).expand(batch, 3, frames, size, size).clone()
    for t in range(frames):
        for b in range(batch):
            x0 = 2 * t + 4 * b
            video[b, :, t, 10:18, x0:x0 + 8] = torch.tensor([0.9, 0.1, -0.5])[:, None, None]
    return video


class ToyClips(Dataset):
    """Smooth random clips [3, 4, 8, 8]: item i is a function of i alone."""

    def __init__(self, n: int = 12):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        coarse = torch.rand(1, 3, 2, 4, 4, generator=torch.Generator().manual_seed(i))
        video = F.interpolate(coarse, size=(4, 8, 8), mode="trilinear")[0]
        return {"video": video, "caption": f"clip {i}", "index": i}


def collate(items):
    return {
        "video": torch.stack([item["video"] for item in items]),
        "caption": [item["caption"] for item in items],
        "index": torch.tensor([item["index"] for item in items]),
    }
