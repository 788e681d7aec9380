"""Codebook collapse of the MoVQ autoencoder (`movq-temporal`) and its remedies, side by side in one run.

    OMP_NUM_THREADS=1 python benchmarks/codebook_usage.py                  # 300 steps per setting
    python benchmarks/codebook_usage.py --steps 600 --data-dir /tmp/codebook-data

Trains the `tiny` preset (the shape of the bundled movq-tiny: 64x64 frames -> 8x8x4 latents, 1,024
codes) twice from the same initial weights on the same batches, with the trainer the `train-vae`
stage uses: once as the bundled movq-tiny was trained (codes drawn from N(0, 1), learned by gradient
alone), once with the quantizer's remedies (`codebook_init`, `dead_code_steps`: k-means
initialisation on the first batch, restarts of codes unused for that many batches). Training data:
`make_dataset` scenes and shapes clips (seed 0), 16 frames each, of which the image stage draws 4 per
clip per step. Then both models, in eval mode, code held-out clips of both kinds (seed 1): every
frame of each.

Printed per setting: codebook usage (fraction of the 1,024 codes that at least one held-out latent
vector is quantized to), the perplexity of the code histogram (exp of its entropy, the number of
equally used codes it is worth), reconstruction PSNR (mean over clips of the per-frame PSNR of the
uint8 round trip against the clip as decoded from its mp4) and training time; then the ratios
remedies / baseline. Data and progress go to stderr, the table to stdout.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

KINDS = ("scenes", "shapes")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load_clips(kind: str, data_dir: Path, n: int, seed: int, size: int):
    """n clips of `kind` made with `seed` (reused when the folder exists), read at `size`, uint8
    [n, 16, size, size, 3]."""
    import torch

    from vidtool.data.clips import ClipDataset
    from vidtool.data.make import make_dataset

    folder = data_dir / f"{kind}-seed{seed}-n{n}"
    log(f"making (or reusing) {n} {kind} clips in {folder}...")
    manifest = make_dataset(kind, folder, n, frames=16, size=64, seed=seed)
    dataset = ClipDataset(manifest, frames=16, size=size)
    return torch.stack([dataset[i]["video"] for i in range(len(dataset))])


class InMemoryClips:
    """Decoded clips as the trainer's dataset: items as ClipDataset makes them, without the mp4 decode."""

    def __init__(self, clips):
        self.clips = clips

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict:
        return {"video": self.clips[index], "caption": "", "index": index}


def train_setting(config, clips, args, out_dir: Path):
    import torch

    from vidtool.autoencoders.movq_temporal import MoVQTemporal
    from vidtool.data.clips import collate_clips
    from vidtool.train.config import TrainConfig
    from vidtool.train.loop import train

    torch.manual_seed(0)  # the same initial weights for every setting
    model = MoVQTemporal(config)
    train_config = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup_steps=args.steps // 10,
                               device="cpu", seed=0, log_every=args.steps, checkpoint_every=args.steps)
    started = time.perf_counter()
    result = train(model, InMemoryClips(clips), collate_clips, train_config, out_dir, progress=False)
    return model.eval(), time.perf_counter() - started, result.metrics.get("codebook_usage", math.nan)


def score(model, clips, batch_size: int) -> dict[str, float]:
    """Usage and perplexity of the codes over every held-out latent vector, and mean clip PSNR."""
    import numpy as np
    import torch

    from vidtool.metrics.frame_quality import psnr_frames
    from vidtool.video import frames_from_model, frames_to_model

    counts = torch.zeros(model.codebook_size, dtype=torch.long)
    psnrs = []
    with torch.inference_mode():
        for batch in clips.split(batch_size):
            encoded = model.encode(frames_to_model(batch))
            counts += torch.bincount(encoded.tokens.flatten(), minlength=model.codebook_size)
            decoded = frames_from_model(model.decode(encoded.latents)).numpy()
            psnrs += [float(psnr_frames(a, b).mean()) for a, b in zip(batch.numpy(), decoded)]
    share = counts[counts > 0].double() / counts.sum()
    return {"usage": float((counts > 0).double().mean()), "perplexity": float(torch.exp(-(share * share.log()).sum())),
            "psnr": float(np.mean(psnrs))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300, help="optimizer updates per setting")
    parser.add_argument("--batch-size", type=int, default=4, help="clips per update (4 frames each)")
    parser.add_argument("--lr", type=float, default=1e-3, help="the bundled recipe's")
    parser.add_argument("--train-clips", type=int, default=100, help="training clips per kind")
    parser.add_argument("--held-out", type=int, default=16, help="held-out clips per kind")
    parser.add_argument("--codebook-init", default="kmeans", help="the remedies' codebook_init")
    parser.add_argument("--dead-code-steps", type=int, default=20, help="the remedies' dead_code_steps")
    parser.add_argument("--data-dir", type=Path, default=None, help="where the clips are made or reused "
                        "(default: a temporary folder)")
    parser.add_argument("--size", type=int, default=32, help="frame side the clips are read at (made at 64; "
                        "32 gives 4x4 latents and a quarter of the cost)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = parser.parse_args()

    import torch

    from vidtool.autoencoders.movq_temporal import preset

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data_dir or Path(tmp) / "data"
        train_clips = torch.cat([load_clips(kind, data_dir, args.train_clips, 0, args.size) for kind in KINDS])
        held_out = {kind: load_clips(kind, data_dir, args.held_out, 1, args.size) for kind in KINDS}
        baseline = preset("tiny")
        settings = {
            "baseline (movq-tiny's recipe)": baseline,
            f"codebook_init={args.codebook_init}, dead_code_steps={args.dead_code_steps}":
                replace(baseline, codebook_init=args.codebook_init, dead_code_steps=args.dead_code_steps),
        }
        rows = []
        for number, (name, config) in enumerate(settings.items()):
            log(f"training {name}: {args.steps} steps of {args.batch_size} clips...")
            model, seconds, train_usage = train_setting(config, train_clips, args, Path(tmp) / f"run{number}")
            scores = {kind: score(model, clips, args.batch_size) for kind, clips in held_out.items()}
            both = score(model, torch.cat(list(held_out.values())), args.batch_size)
            rows.append((name, both, scores, train_usage, seconds))

    print(f"movq-temporal tiny, {args.steps} steps of {args.batch_size} clips x 4 frames, lr {args.lr}; "
          f"held out: {args.held_out} scenes + {args.held_out} shapes clips x 16 frames "
          f"at {args.size}x{args.size} ({2 * args.held_out * 16 * (args.size // 8) ** 2} latent vectors)")
    header = (f"{'setting':<46} {'usage':>7} {'perplexity':>10} {'PSNR scenes':>11} {'PSNR shapes':>11} "
              f"{'last-batch usage':>16} {'train s':>8}")
    print(header)
    for name, both, scores, train_usage, seconds in rows:
        print(f"{name:<46} {both['usage']:>7.1%} {both['perplexity']:>10.1f} {scores['scenes']['psnr']:>9.2f}dB "
              f"{scores['shapes']['psnr']:>9.2f}dB {train_usage:>16.1%} {seconds:>8.0f}")
    (_, base, base_kinds, _, base_s), (_, fixed, fixed_kinds, _, fixed_s) = rows
    print(f"ratios remedies / baseline: usage x{fixed['usage'] / base['usage']:.2f}, "
          f"perplexity x{fixed['perplexity'] / base['perplexity']:.2f}, "
          f"PSNR scenes {fixed_kinds['scenes']['psnr'] - base_kinds['scenes']['psnr']:+.2f} dB, "
          f"PSNR shapes {fixed_kinds['shapes']['psnr'] - base_kinds['shapes']['psnr']:+.2f} dB, "
          f"training time x{fixed_s / base_s:.2f}")


if __name__ == "__main__":
    main()
