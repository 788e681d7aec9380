"""How much of a clip's shape survives each bundled autoencoder (issue 31's inpainting goal).

The shapes probe reads a shape from its blob's fill of its bounding box (circle π/4, square 1,
triangle 1/2). A generator can draw a shape no better than its autoencoder can reproduce it: this
encodes and decodes held-out `shapes` clips (seed 1, never trained on) through each model and
reports how often the probe still reads the clip's own shape, against the raw clips.

    python benchmarks/shape_ceiling.py --n 48
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np


def main() -> None:
    import torch

    from vidtool import checkpoint
    from vidtool.autoencoders.apply import decode_frames, encode_frames
    from vidtool.autoencoders.tiling import default_tiling
    from vidtool.data.make import make_dataset
    from vidtool.data.manifest import read_manifest
    from vidtool.metrics.shapes_probe import read_clip
    from vidtool.model_store import BUNDLED
    from vidtool.video import read_video

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=48, help="held-out clips")
    parser.add_argument("--models", nargs="+", default=["mbq-vae-tiny-v1", "mbq-vae-tiny", "movq-tiny", "cm-vae-tiny"],
                        help="bundled model names or folders")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    with tempfile.TemporaryDirectory() as tmp:
        make_dataset("shapes", Path(tmp) / "held-out", args.n, frames=16, size=64, fps=8, seed=1)
        records = read_manifest(Path(tmp) / "held-out/manifest.jsonl")
        clips = [(r, read_video(Path(tmp) / "held-out" / r["path"]).frames) for r in records]
    print(f"{len(clips)} held-out shapes clips; the probe reads the clip's own shape in")
    print(f"  {'raw clips':24s} {np.mean([read_clip(v).shape == r['shape'] for r, v in clips]):6.1%}")
    for name in args.models:
        folder = Path(name) if Path(name).is_dir() else BUNDLED / name
        model = checkpoint.from_pretrained(folder).eval()
        tiling = default_tiling(model)
        hits = []
        for record, video in clips:
            latents = encode_frames(model, video[None], tiling, "cpu").latents
            decoded = np.concatenate(list(decode_frames(model, latents, tiling, "cpu")), axis=1)[0]
            hits.append(read_clip(decoded).shape == record["shape"])
        print(f"  {folder.name:24s} {np.mean(hits):6.1%}  ({checkpoint.model_tag(folder)})", flush=True)


if __name__ == "__main__":
    main()
