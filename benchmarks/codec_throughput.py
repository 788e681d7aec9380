"""Frames per second of encode and decode through the stages, against the same network's bare forward.

    python benchmarks/codec_throughput.py                         # --quick: 16 frames, best of 3
    python benchmarks/codec_throughput.py --no-quick              # 64 frames, best of 5
    python benchmarks/codec_throughput.py --models movq-tiny --sizes 144x176 --frames 120

For each bundled autoencoder and frame size (H x W) it times, on the same uint8 clip and in the same
process, alternating:
  pipeline encode  `stages.autoencode.LoadedEncoder.encode` (what `encode`/`tokenize` run: length
                   fitting, uint8 → float, temporal chunks with context, the tensor file)
  bare encode      `model.encode` on the whole clip as one float tensor, already in [-1, 1]
  pipeline decode  `stages.decode.decode_tensor` (what `decode` runs: tokens → latents, streamed
                   chunks with context, float → uint8, the chunks joined)
  bare decode      `model.decode` on the whole latent clip
and prints frames/s of each and the ratio pipeline time / bare time (goal <= 1.2: what the stages add
to the network). `mcd-vae-tiny` is left out: it encodes the motion of one fixed-length clip
(LaMD r_t = L), so it has no per-frame rate to compare. Every timed call follows a warm-up call on
one chunk at the same frame size, so oneDNN's kernel set-up is not counted. Threads: torch's default
(set OMP_NUM_THREADS); on a shared machine a run is slowed whenever another process takes the
cores, so each call is timed several times, alternating, and the fastest kept (--repeats; short
calls more often, --min-seconds); the load average at the start and end is printed. Results go to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from stages.autoencode import LoadedEncoder
from stages.decode import decode_tensor
from stages.media_input import VideoInput
from vidtool.checkpoint import from_pretrained
from vidtool.video import frames_to_model

DEFAULTS = Path(__file__).resolve().parents[1] / "vidtool" / "defaults"
MODELS = ("cm-vae-tiny", "movq-tiny", "movq-tiny-video", "mbq-vae-tiny", "mbq-vae-tiny-v1")
SIZES = "64x64,256x256,144x256"
GOAL = 1.2


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def moving_pattern(frames: int, height: int, width: int) -> np.ndarray:
    """uint8 [T, H, W, 3]: drifting sinusoids, a smooth clip every codec handles (its content does not
    change the arithmetic, only keeps the codes realistic)."""
    t, y, x = np.meshgrid(np.arange(frames), np.arange(height), np.arange(width), indexing="ij")
    channels = [np.sin((x + 2 * t) / 9) * np.cos(y / 13), np.cos((y - t) / 7), np.sin((x + y + 3 * t) / 17)]
    return (128 + 100 * np.stack(channels, -1)).clip(0, 255).astype(np.uint8)


def timed(call, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    result = call(*args, **kwargs)
    return time.perf_counter() - start, result


def measure(name: str, height: int, width: int, frames: int, repeats: int, min_seconds: float) -> dict[str, float]:
    """Seconds of the four calls (the fastest of at least `repeats` rounds, and of more while a round
    takes under `min_seconds` in all: a 64² call of 0.1 s is timed often enough that another job's
    burst on the shared cores does not decide it) for one model and frame size."""
    ae = from_pretrained(DEFAULTS / name)
    role = "tokenize" if ae.family == "mbq-vae" else "encode"  # the stage each family serves
    encoder = LoadedEncoder(ae, DEFAULTS / name, "cpu", role)
    clip = moving_pattern(frames, height, width)
    video = frames_to_model(torch.from_numpy(clip[None]))
    with torch.inference_mode():
        warm = moving_pattern(4 * ae.temporal_factor, height, width)
        encoded = encoder.encode(VideoInput(warm[None], 8.0, "warm-up"), None)
        decode_tensor(ae, encoded.kind, encoded.main, device="cpu")
        best = {key: float("inf") for key in ("pipeline encode", "bare encode", "pipeline decode", "bare decode")}
        spent, rounds = 0.0, 0
        while rounds < repeats or (spent < min_seconds * repeats and rounds < 20):
            rounds += 1
            started = time.perf_counter()
            seconds, encoded = timed(encoder.encode, VideoInput(clip[None], 8.0, "benchmark"), None)
            best["pipeline encode"] = min(best["pipeline encode"], seconds)
            seconds, bare = timed(ae.encode, video)
            best["bare encode"] = min(best["bare encode"], seconds)
            seconds, decoded = timed(decode_tensor, ae, encoded.kind, encoded.main, device="cpu")
            best["pipeline decode"] = min(best["pipeline decode"], seconds)
            seconds, _ = timed(ae.decode, bare.latents)
            best["bare decode"] = min(best["bare decode"], seconds)
            spent += time.perf_counter() - started
    assert decoded.shape == (1, frames, height, width, 3), decoded.shape
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="example: OMP_NUM_THREADS=2 python benchmarks/codec_throughput.py --sizes 64x64")
    parser.add_argument("--quick", action=argparse.BooleanOptionalAction, default=True,
                        help="16 frames, best of 3 (default); --no-quick: 64 frames, best of 5")
    parser.add_argument("--frames", type=int, help="clip length (a multiple of 4); overrides --quick's")
    parser.add_argument("--repeats", type=int, help="timed runs of each call, the fastest kept; overrides --quick's")
    parser.add_argument("--min-seconds", type=float, default=2.0,
                        help="keep timing (up to 20 rounds) until the rounds took this long times --repeats (default 2)")
    parser.add_argument("--sizes", default=SIZES, help=f"comma-separated HxW frame sizes (default {SIZES})")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated bundled autoencoders")
    args = parser.parse_args()
    frames = args.frames or (16 if args.quick else 64)
    repeats = args.repeats or (3 if args.quick else 5)
    sizes = [tuple(int(v) for v in size.split("x")) for size in args.sizes.split(",")]

    print(f"frames/s at {frames} frames, torch threads {torch.get_num_threads()}, best of >= {repeats} rounds "
          f"(more while they take < {args.min_seconds * repeats:.0f} s); ratio = pipeline time / bare time (goal <= {GOAL}); "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'model':<16} {'size':>8} | {'encode fps':>10} {'bare':>8} {'ratio':>6} | {'decode fps':>10} {'bare':>8} {'ratio':>6}")
    worst = 0.0
    for name in args.models.split(","):
        for height, width in sizes:
            log(f"{name} at {height}x{width}, {frames} frames...")
            s = measure(name, height, width, frames, repeats, args.min_seconds)
            enc, dec = s["pipeline encode"] / s["bare encode"], s["pipeline decode"] / s["bare decode"]
            worst = max(worst, enc, dec)
            print(f"{name:<16} {f'{height}x{width}':>8} | {frames / s['pipeline encode']:>10.1f} "
                  f"{frames / s['bare encode']:>8.1f} {enc:>6.2f} | {frames / s['pipeline decode']:>10.1f} "
                  f"{frames / s['bare decode']:>8.1f} {dec:>6.2f}", flush=True)
    print("mcd-vae-tiny: not timed (LaMD: one motion latent per fixed-length clip, no per-frame rate)")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    print(f"{'PASS' if worst <= GOAL else 'FAIL'}  worst ratio {worst:.2f} (goal <= {GOAL})")


if __name__ == "__main__":
    main()
