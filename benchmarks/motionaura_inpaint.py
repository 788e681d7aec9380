"""Sketch-guided inpainting on held-out `shapes` clips (MotionAura §4), measured.

For each held-out clip (a set made with another seed than the training data) the hole is the
primary shape's box grown by 4 pixels in every frame, so the shape is gone from the context and the
hole's outline says nothing of it. Two requests per clip:
- same: the clip's own shape sketched (its first-frame outline) and its own caption;
- swap: another shape's sketch (taken from a clip with another shape) and the caption with that
  shape's name, so only the sketch and prompt can make it appear.
The shapes probe reads each result's dominant colour blob; a hit is the requested shape (and, for
the colour, the requested colour). The context check is the PSNR outside the hole against the input
(the stage composites, so it is exact: vidtool's PSNR gives identical pixels its cap, 100 dB) and,
for reference, that of the raw decoded tokens.

    python benchmarks/motionaura_inpaint.py --n 48 -o runs/tiny/inpaint-quality.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    import torch

    from vidtool import checkpoint, model_store
    from vidtool.data.make import make_dataset
    from vidtool.data.manifest import read_manifest
    from vidtool.data.shapes import SHAPES
    from vidtool.data.tokens import box_region
    from vidtool.pipelines.motionaura import InpaintRequest, inpaint
    from vidtool.metrics.shapes_probe import read_clip
    from vidtool.text import TextEncoder
    from vidtool.video import psnr, read_video

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="spectral-inpaint folder (default: the bundled one)")
    parser.add_argument("--n", type=int, default=48, help="held-out clips")
    parser.add_argument("--seed", type=int, default=1, help="data seed of the held-out clips (training used 0)")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("-o", "--out", type=Path, default=None, help="write the numbers as JSON")
    args = parser.parse_args()

    torch.set_grad_enabled(False)
    folder = args.model or model_store.default_model("inpaint")
    model = checkpoint.from_pretrained(folder)
    base = model.base.config
    tokenizer = checkpoint.from_pretrained(model_store.find_by_tag(base.tokenizer))
    encoder = TextEncoder(max_length=base.text_max_length)
    frames = base.token_frames * base.temporal_factor
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        make_dataset("shapes", Path(tmp) / "held-out", args.n, frames=frames, size=64, fps=8, seed=args.seed)
        root = Path(tmp) / "held-out"
        records = read_manifest(root / "manifest.jsonl")
        clips = []
        for record in records:
            with np.load(root / record["mask"]) as data:
                masks, sketch = data["mask"], data["sketch"][0]
            clips.append((record, read_video(root / record["path"]).frames, box_region(masks, 4), sketch))
    by_shape = {shape: [c for c in clips if c[0]["shape"] == shape and c[3].any()] for shape in SHAPES}
    rows = {"same": [], "swap": []}
    for i, (record, video, hole, sketch) in enumerate(clips):
        if not sketch.any():
            continue  # the shape starts outside the frame: no outline to draw from
        others = [s for s in SHAPES if s != record["shape"] and by_shape[s]]
        other = others[i % len(others)]
        swap_sketch = by_shape[other][i % len(by_shape[other])][3]
        requests = {"same": (sketch, record["caption"], record["shape"]),
                    "swap": (swap_sketch, record["caption"].replace(record["shape"], other, 1), other)}
        for name, (strokes, prompt, shape) in requests.items():
            result = inpaint(model, tokenizer, InpaintRequest(video, hole, strokes, prompt), encoder,
                             steps=args.steps, seed=i)
            reading = read_clip(result.frames)
            outside = ~hole
            rows[name].append({
                "shape_hit": reading.shape == shape, "color_hit": reading.color == record["color"],
                "psnr_outside": psnr(result.frames[outside], video[outside]),
                "psnr_outside_decoded": psnr(result.decoded[outside], video[outside]),
                "psnr_inside_same": psnr(result.frames[hole], video[hole]) if name == "same" else None,
            })
    report = {"model": checkpoint.model_tag(folder), "clips": len(rows["same"]), "seconds": time.monotonic() - started}
    for name, items in rows.items():
        report[f"{name}: sketched shape hit rate"] = float(np.mean([r["shape_hit"] for r in items]))
        report[f"{name}: prompt colour hit rate"] = float(np.mean([r["color_hit"] for r in items]))
        report[f"{name}: min PSNR outside the hole (dB)"] = min(r["psnr_outside"] for r in items)
        report[f"{name}: mean PSNR outside, raw decoded tokens (dB)"] = float(
            np.mean([r["psnr_outside_decoded"] for r in items]))
    report["same: mean PSNR inside the hole vs the original (dB)"] = float(
        np.mean([r["psnr_inside_same"] for r in rows["same"]]))
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
