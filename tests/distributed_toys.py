"""A tiny trainable model, dataset and process entry points shared by the multi-process training
tests (tests/test_distributed.py) and benchmarks/ddp_scaling.py.

The model has its blocks in an nn.ModuleList (the unit FSDP shards and activation checkpointing
recomputes), dropout and a random mask, so the tests see the trainer's noise handling too.
Run as a script it trains one run in this process: `python tests/distributed_toys.py OUT JSON_CONFIG`.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from toy_videos import ToyClips, collate


@dataclass
class ToyBlocksConfig:
    width: int = 8
    depth: int = 2
    dropout: float = 0.1
    mask_ratio: float = 0.25


class ToyBlocks(nn.Module):
    family = "toy-blocks"
    config_class = ToyBlocksConfig

    def __init__(self, config: ToyBlocksConfig):
        super().__init__()
        self.config = config
        self.stem = nn.Conv3d(3, config.width, 3, padding=1)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.GroupNorm(2, config.width), nn.Conv3d(config.width, config.width, 3, padding=1), nn.GELU())
            for _ in range(config.depth)
        )
        self.head = nn.Conv3d(config.width, 3, 1)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        h = self.stem(video)
        for block in self.blocks:
            h = h + block(h)
        return self.head(self.dropout(h))

    def training_losses(self, batch, *, step, total_steps):
        video = batch["video"]
        b, _, t, h, w = video.shape
        keep = (torch.rand(b, 1, t, h, w, device=video.device) >= self.config.mask_ratio).to(video.dtype)
        mse = F.mse_loss(self(video * keep).float(), video)
        return {"loss": mse, "mse": mse.detach()}


def make_model(init_seed: int = 0, **config) -> ToyBlocks:
    torch.manual_seed(init_seed)
    return ToyBlocks(ToyBlocksConfig(**config))


def register_family() -> None:
    from vidtool import checkpoint

    checkpoint.FAMILIES.setdefault("toy-blocks", f"{__name__}:ToyBlocks")


def run(out: str, config: dict, *, init_seed: int = 0, dataset_size: int = 16, model: dict | None = None,
        step_seconds: float = 0.0):
    """One training run in this process (one rank when torchrun-style variables are set)."""
    from vidtool.train.config import TrainConfig
    from vidtool.train.loop import train

    register_family()
    net = make_model(init_seed, **(model or {}))
    on_log = (lambda record: time.sleep(step_seconds)) if step_seconds else None
    return net, train(net, ToyClips(dataset_size), collate, TrainConfig(**config), out, progress=False, on_log=on_log)


if __name__ == "__main__":  # python tests/distributed_toys.py OUT JSON_CONFIG [STEP_SECONDS]
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    run(sys.argv[1], json.loads(sys.argv[2]), step_seconds=float(sys.argv[3]) if len(sys.argv) > 3 else 0.0)
