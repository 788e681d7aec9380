"""Reconstruction quality of autoencoders on held-out shapes and photos clips: PSNR and SSIM.

    python benchmarks/reconstruction.py --model tiny/cm-vae --model tiny/mbq-vae --json rec.json

For each seed the script makes (or reuses, in --data-dir) `n` shapes and `n` photos clips with
`make_dataset(kind, ..., seed=SEED)`: 16 frames (--frames), 64x64, 8 fps. The default seed 1 is one
the training data never uses (the recipes and `vidtool make-dataset` use seed 0), so the clips are new
draws: new shapes, colours, paths and speeds, and new pans and zooms over the same few photographs
scikit-image ships. Each clip is read as `ClipDataset(manifest, frames=F, size=64)` reads it for
training, encoded and decoded with `encode_chunked` / `decode_chunked` (the tiling `encode` and
`decode` use: the model's `default_tiling`, or --chunk / --context as they take them) in
batches, turned back to uint8 and scored per clip with `vidtool.metrics.frame_quality.video_scores`;
a dataset's score is the mean of its clips' scores.

The reference is the clip as decoded from its mp4 (what the model sees in training and here), not
the render before H.264 compression, which would cap every score near the codec's ~42 dB.
The table goes to stdout, progress to stderr; --json writes every number, per clip included.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

SIZE = 64
KINDS = ("shapes", "photos")
REFERENCE_NOTE = "each clip as decoded from its mp4 (what the model sees), not the render before H.264 compression"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def held_out_set(kind: str, data_dir: Path, n: int, seed: int, frames: int) -> Path:
    from vidtool.data.make import make_dataset

    folder = data_dir / (f"{kind}-seed{seed}" if frames == 16 else f"{kind}-seed{seed}-{frames}f")
    log(f"making (or reusing) {n} {kind} clips of {frames} frames in {folder}...")
    return make_dataset(kind, folder, n, frames=frames, size=SIZE, seed=seed)


def reconstruct(model, clips, device: str, tiling):
    """uint8 clips [B, T, H, W, 3] -> their encode/decode round trip, uint8 of the same shape."""
    import torch

    from vidtool.autoencoders.apply import fit_length, fit_size
    from vidtool.autoencoders.tiling import decode_chunked, encode_chunked
    from vidtool.video import frames_from_model, frames_to_model

    padded, length = fit_length(clips, model.temporal_factor, model.family)
    padded, (height, width) = fit_size(padded, model.spatial_factor)
    with torch.inference_mode():
        latents = encode_chunked(model, frames_to_model(torch.from_numpy(padded)).to(device), tiling).latents
        decoded = frames_from_model(decode_chunked(model, latents, tiling).float().cpu()).numpy()
    return decoded[:, :length, :height, :width]


def score_model(model, manifest: Path, n: int, frames: int, batch_size: int, device: str, tiling) -> list[dict]:
    """Per-clip {"index", "psnr", "ssim"} for the first `n` clips of the manifest."""
    import numpy as np

    from vidtool.data.clips import ClipDataset
    from vidtool.metrics.frame_quality import video_scores

    dataset = ClipDataset(manifest, frames=frames, size=SIZE)
    n = min(n, len(dataset))
    scores = []
    for start in range(0, n, batch_size):
        items = [dataset[i] for i in range(start, min(start + batch_size, n))]
        clips = np.stack([item["video"].numpy() for item in items])
        for item, clip, rec in zip(items, clips, reconstruct(model, clips, device, tiling)):
            scores.append({"index": item["index"], **video_scores(clip, rec)})
        log(f"  {len(scores)}/{n}")
    return scores


def print_table(results: list[dict], seed: int, frames: int) -> None:
    from rich.console import Console
    from rich.table import Table

    caption = (f"reference: {REFERENCE_NOTE}; {frames}-frame clips made with seed {seed} "
               "(training data uses seed 0)")
    table = Table(title="reconstruction on held-out clips", caption=caption)
    for column in ("model", "family", "dataset", "PSNR dB", "SSIM", "n"):
        table.add_column(column, justify="right" if column in ("PSNR dB", "SSIM", "n") else "left")
    for r in results:
        table.add_row(r["model"], r["family"], r["dataset"], f"{r['psnr']:.2f}", f"{r['ssim']:.4f}", str(r["n"]))
    Console(width=120).print(table)


def main() -> None:
    parser = argparse.ArgumentParser(
        description="PSNR/SSIM of autoencoder reconstructions on held-out shapes and photos clips.",
        epilog="example: python benchmarks/reconstruction.py --model tiny/cm-vae --n 200 --json rec.json",
    )
    parser.add_argument("--model", type=Path, action="append", required=True,
                        help="autoencoder folder; repeat to compare several")
    parser.add_argument("--n", type=int, default=200, help="clips per dataset (default 200)")
    parser.add_argument("--seed", type=int, default=1,
                        help="dataset seed (default 1; training data uses 0, so keep it different)")
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/vidtool-heldout"),
                        help="where the held-out sets are made and reused (default /tmp/vidtool-heldout)")
    parser.add_argument("--frames", type=int, default=16,
                        help="clip length (default 16, what the bundled models train on); longer clips go through "
                             "the temporal chunking of --chunk and --context")
    parser.add_argument("--chunk", type=int, help="latent frames per temporal chunk (default: as encode/decode)")
    parser.add_argument("--context", type=int,
                        help="latent frames of context per chunk (default: as encode/decode; 0: independent windows)")
    parser.add_argument("--batch-size", type=int, default=8, help="clips per encode/decode batch (default 8)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--json", type=Path, help="also write all results, per clip included, to this file")
    args = parser.parse_args()
    if min(args.n, args.batch_size, args.frames, args.chunk or 1) < 1 or (args.context or 0) < 0:
        parser.error("--n, --frames, --chunk and --batch-size must be at least 1, --context at least 0")

    import torch

    from vidtool.atomic import atomic_write_text
    from vidtool.autoencoders.tiling import default_tiling
    from vidtool.checkpoint import from_pretrained
    from vidtool.errors import UserError

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        manifests = {kind: held_out_set(kind, args.data_dir, args.n, args.seed, args.frames) for kind in KINDS}
        results = []
        for folder in args.model:
            model = from_pretrained(folder, device=device)
            for kind, manifest in manifests.items():
                log(f"{folder} ({model.family}) on {kind}:")
                clips = score_model(model, manifest, args.n, args.frames, args.batch_size, device,
                                    default_tiling(model, args.chunk, args.context))
                results.append({
                    "model": str(folder), "family": model.family, "dataset": kind, "n": len(clips),
                    "psnr": sum(c["psnr"] for c in clips) / len(clips),
                    "ssim": sum(c["ssim"] for c in clips) / len(clips),
                    "clips": clips,
                })
    except UserError as error:
        log(f"error: {error}")
        sys.exit(2)
    print_table(results, args.seed, args.frames)
    if args.json:
        doc = {"reference": REFERENCE_NOTE, "seed": args.seed, "frames": args.frames, "chunk": args.chunk,
               "context": args.context, "size": SIZE, "data_dir": str(args.data_dir), "results": results}
        atomic_write_text(args.json, json.dumps(doc, indent=2) + "\n")
        log(f"wrote {args.json}")


if __name__ == "__main__":
    main()
