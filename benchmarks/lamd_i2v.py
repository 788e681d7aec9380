"""How well does LaMD animate held-out `shapes` first frames? (the issue's image-to-video goals)

    vidtool make-dataset shapes -n 200 --seed 1 -o data/shapes-seed1       # never seen in training
    python benchmarks/lamd_i2v.py --data data/shapes-seed1/manifest.jsonl --n 100 --json quality.json

For each of the first --n clips: its first L frames (at the DMG's training rate) give the first
frame, which is the only image input; its caption is the text. `generate` + `decode` are run
in-process, as the stages do them (DDPM on a K-step subsequence, seed + i for clip i):

- frame-0 PSNR: decoded frame 0 against the given image (uint8, dB; goal >= 30);
- direction hit rate with the clip's own caption: the shapes probe (vidtool.metrics.shapes_probe)
  reads the dominant shape's direction in the generated clip; a hit when it is the caption's
  (goal >= 80%); colour hits are reported too (the colour must come from the image);
- direction control: the same first frames with each of the four directions put in the caption;
  hit rate over all 4·n (a model that ignored the text would score about 25%);
- reconstruction reference: the MCD-VAE's encode -> decode of the real clip, frame-0 and
  whole-clip PSNR, and the probe's direction agreement with the real clip.

Prints one JSON object (also written to --json): a flat dict of the numbers.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import torch

DIRECTIONS = ("left", "right", "up", "down")


def main() -> None:
    from vidtool.pipelines import lamd as lamd_pipeline
    from vidtool.pipelines.lamd import load_pair
    from vidtool.data.clips import ClipDataset
    from vidtool.metrics.shapes_probe import hits, prompt_target, read_clip
    from vidtool.model_store import default_model
    from vidtool.text import TextEncoder
    from vidtool.video import frames_from_model, frames_to_model, psnr

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="dmg folder (default: the bundled dmg-tiny)")
    parser.add_argument("--data", type=Path, required=True, help="held-out shapes manifest")
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--steps", type=int, help="K (default: the model's)")
    parser.add_argument("--cfg", type=float, help="guidance scale (default: the model's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=25)
    parser.add_argument("--no-control", action="store_true", help="skip the four-direction control run")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    dmg, vae, _ = load_pair(args.model or default_model("lamd"), "cpu")
    c = dmg.config
    clips = ClipDataset(args.data, frames=c.frames, fps=c.fps, size=c.image_size)
    n = min(args.n, len(clips))
    videos = torch.stack([clips[i]["video"] for i in range(n)]).numpy()  # uint8 [n, L, H, W, 3]
    captions = [clips[i]["caption"] for i in range(n)]
    encoder = TextEncoder(max_length=c.text_max_length)
    null = encoder.encode([""])

    def animate(first: np.ndarray, prompts: list[str], seed0: int) -> np.ndarray:
        out = []
        for s in range(0, len(prompts), args.batch_size):
            image = torch.from_numpy(first[s:s + args.batch_size])
            embedded = encoder.encode(prompts[s:s + args.batch_size])
            with torch.inference_mode():
                motion = lamd_pipeline.image_to_video(
                    dmg, vae, image, text=embedded.tokens, text_mask=embedded.mask, null_text=null.tokens[0],
                    null_mask=null.mask[0], steps=args.steps, guidance_scale=args.cfg,
                    generator=[torch.Generator().manual_seed(seed0 + s + i) for i in range(image.shape[0])])
                out.append(lamd_pipeline.render(vae, motion.motion, motion.content).frames)
        return np.concatenate(out)

    def direction_hits(generated: np.ndarray, prompts: list[str]) -> np.ndarray:
        readings = np.stack([read_clip(v).as_indices() for v in generated])
        return hits(readings, np.stack([prompt_target(p) for p in prompts]))

    first = videos[:, 0]
    generated = animate(first, captions, args.seed)
    own = direction_hits(generated, captions)
    result = {
        "clips": n, "frames": c.frames, "steps": args.steps or c.sampling_steps,
        "cfg": c.guidance_scale if args.cfg is None else args.cfg,
        "frame0_psnr_db": float(np.mean([psnr(g[0], f) for g, f in zip(generated, first)])),
        "frame0_psnr_min_db": float(np.min([psnr(g[0], f) for g, f in zip(generated, first)])),
        "direction_hit_rate": float(own[:, 2].mean()),
        "color_hit_rate": float(own[:, 0].mean()),
    }
    if not args.no_control:
        prompts = [re.sub(r"moving (left|right|up|down)", f"moving {d}", cap) for cap in captions for d in DIRECTIONS]
        control = animate(np.repeat(first, len(DIRECTIONS), axis=0), prompts, args.seed + 10_000)
        result["direction_control_hit_rate"] = float(direction_hits(control, prompts)[:, 2].mean())
    with torch.inference_mode():
        video = frames_to_model(torch.from_numpy(videos))
        recon = frames_from_model(vae.decode(vae.encode(video).latents, video[:, :, 0])).numpy()
    real = np.stack([read_clip(v).as_indices() for v in videos])
    rec = np.stack([read_clip(v).as_indices() for v in recon])
    result["reconstruction_psnr_db"] = float(np.mean([psnr(r, v) for r, v in zip(recon, videos)]))
    result["reconstruction_frame0_psnr_db"] = float(np.mean([psnr(r[0], v[0]) for r, v in zip(recon, videos)]))
    result["reconstruction_direction_agreement"] = float(((real[:, 3] == rec[:, 3]) & (real[:, 3] >= 0)).mean())
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
