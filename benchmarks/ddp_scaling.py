"""Data-parallel scaling of the trainer on this machine: samples/s with 1 and 2 gloo ranks on CPU.

    python benchmarks/ddp_scaling.py                      # DDP, 30 timed steps
    python benchmarks/ddp_scaling.py --strategy fsdp      # FSDP2 (fully_shard) instead
    python benchmarks/ddp_scaling.py --steps 60 --width 64

Both runs use the same model (a small 3D-conv video denoiser with residual blocks, built here), the
same per-rank micro-batch and one thread per rank, through `vidtool.train.loop.train` exactly as a
`torchrun` job does (weak scaling: 2 ranks process twice the samples per update). Each run is a
fresh set of processes; the first WARMUP updates are not timed. samples/s = timed updates × global
batch / seconds between the end of update WARMUP and the last one, on rank 0.

The ratio samples/s(2) / samples/s(1) is 2 for perfect scaling; the gradient all-reduce over gloo
(loopback TCP) and the two ranks sharing a 2-core machine with anything else running take it
below that. Results go to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

WARMUP = 3


@dataclass
class BenchConfig:
    width: int = 32
    depth: int = 4


class Denoiser(nn.Module):
    family = "bench-denoiser"
    config_class = BenchConfig

    def __init__(self, config: BenchConfig):
        super().__init__()
        self.config = config
        self.stem = nn.Conv3d(3, config.width, 3, padding=1)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.GroupNorm(4, config.width), nn.Conv3d(config.width, config.width, 3, padding=1), nn.SiLU())
            for _ in range(config.depth))
        self.head = nn.Conv3d(config.width, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        for block in self.blocks:
            h = h + block(h)
        return self.head(h)

    def training_losses(self, batch, *, step, total_steps):
        clean = batch["video"]
        noise = torch.randn_like(clean)
        t = torch.rand(clean.shape[0], 1, 1, 1, 1)
        loss = F.mse_loss(self(clean * (1 - t) + noise * t), noise)  # predict the noise at a random level
        return {"loss": loss}


class Clips(Dataset):
    def __len__(self) -> int:
        return 256

    def __getitem__(self, i: int):
        coarse = torch.rand(1, 3, 2, 4, 4, generator=torch.Generator().manual_seed(i))
        return {"video": F.interpolate(coarse, size=(8, 32, 32), mode="trilinear")[0]}


def _rank(rank: int, world: int, port: int, args: argparse.Namespace, result_path: str) -> None:
    from vidtool.train.config import TrainConfig
    from vidtool.train.loop import train

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = Denoiser(BenchConfig(width=args.width, depth=args.depth))
    stamps: dict[int, float] = {}
    config = TrainConfig(steps=WARMUP + args.steps, batch_size=args.batch_size, lr=1e-3, warmup_steps=0,
                         device="cpu", checkpoint_every=10**6, log_every=1, deterministic=False,
                         strategy=args.strategy)
    with tempfile.TemporaryDirectory() as out:
        train(model, Clips(), None, config, out, progress=False,
              on_log=lambda record: stamps.__setitem__(record["step"], time.perf_counter()))
    if rank == 0:
        seconds = stamps[WARMUP + args.steps] - stamps[WARMUP]
        samples = args.steps * args.batch_size * world
        with open(result_path, "w") as f:
            json.dump({"ranks": world, "samples": samples, "seconds": seconds}, f)


def measure(world: int, args: argparse.Namespace) -> dict:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.NamedTemporaryFile(suffix=".json") as result:
        if world == 1:
            os.environ.pop("WORLD_SIZE", None)
            _rank(0, 1, port, args, result.name)
        else:
            torch.multiprocessing.spawn(_rank, args=(world, port, args, result.name), nprocs=world, join=True)
        with open(result.name) as f:
            return json.load(f)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30, help="timed optimizer updates per run")
    parser.add_argument("--batch-size", type=int, default=4, help="clips per rank and update")
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--strategy", choices=("ddp", "fsdp"), default="ddp")
    parser.add_argument("--repeats", type=int, default=2, help="alternating 1/2-rank runs; the best of each is kept")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    params = sum(p.numel() for p in Denoiser(BenchConfig(args.width, args.depth)).parameters())
    print(f"model: {params / 1e3:.1f}k parameters, clips 3x8x32x32, {args.batch_size} per rank, "
          f"{args.steps} timed updates, strategy {args.strategy}, {os.cpu_count()} CPUs", file=sys.stderr)
    best: dict[int, float] = {}
    for repeat in range(args.repeats):
        for world in (1, 2):  # alternated, so a burst of load elsewhere hits both
            r = measure(world, args)
            rate = r["samples"] / r["seconds"]
            best[world] = max(best.get(world, 0.0), rate)
            print(f"  run {repeat + 1}: {world} rank(s): {rate:.1f} samples/s", file=sys.stderr)
    print(f"samples/s, 1 rank:  {best[1]:.1f}")
    print(f"samples/s, 2 ranks: {best[2]:.1f}")
    print(f"ratio 2/1: {best[2] / best[1]:.2f}  (2.00 = perfect scaling; strategy {args.strategy}, gloo, CPU)")


if __name__ == "__main__":
    main()
