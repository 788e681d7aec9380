"""Temporal smoothness of the generators, as ratios measured side by side in one run.

    python benchmarks/smoothness.py                      # the bundled models, 24 alignment prompts
    python benchmarks/smoothness.py --n 6 --steps 10     # quicker
    python benchmarks/smoothness.py --skip-fusionframes  # HARIVO only

Smoothness is the mean absolute difference between consecutive decoded frames (uint8, 0-255),
averaged over frames and videos: lower is smoother. Two comparisons, each with the same prompts and
the same seeds (prompt i uses seed + i):

1. FusionFrames' pipeline (keyframes -> interpolate -> decode, 4T-3 frames) against the frozen T2I
   model sampling every one of those 4T-3 frames on its own. The per-frame noise is drawn from the
   prompt's generator with the video's shape, so both sides start from one seed per video.
2. HARIVO with mitigating-gradient sampling (alpha = 40, Algorithm 1) against alpha = 0.

The ratios (1: pipeline / per-frame T2I; 2: alpha 40 / alpha 0) are printed together; below 1 means
the first is smoother. A static video would score 0, so the probe's hit rates (vidtool evaluate
--metric shapes-probe) are the check that smoothness does not come from a frozen picture.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from vidtool.autoencoders.apply import decode_frames
from vidtool.autoencoders.tiling import Tiling
from vidtool.checkpoint import from_pretrained
from vidtool.model_store import default_model, find_by_tag
from vidtool.pipelines import fusionframes, harivo as harivo_pipeline
from vidtool.text import TextEncoder

PROMPTS = Path(__file__).resolve().parents[1] / "recipes" / "tiny" / "alignment-prompts.txt"


def frame_difference(video: np.ndarray) -> float:
    """uint8 [B, T, H, W, 3] -> mean |frame t+1 - frame t|."""
    return float(np.abs(np.diff(video.astype(np.float32), axis=1)).mean())


def decode(vae, latents: torch.Tensor) -> np.ndarray:
    return np.concatenate(list(decode_frames(vae, latents, Tiling(), "cpu")), axis=1)


def per_frame_t2i(t2i, text, null, frames: int, seeds: list[int], steps: int, cfg: float) -> torch.Tensor:
    """Each of `frames` frames sampled independently by the T2I model; noise [C, T, h, w] per video."""
    c, size = t2i.config.latent_channels, t2i.config.sample_size
    videos = []
    for i, seed in enumerate(seeds):
        noise = torch.randn(c, frames, size, size, generator=torch.Generator().manual_seed(seed))
        images = fusionframes.sample_images(t2i, text.tokens[i:i + 1].expand(frames, -1, -1),
                                            text.mask[i:i + 1].expand(frames, -1), null.tokens[0], null.mask[0], noise=noise.permute(1, 0, 2, 3), steps=steps, cfg=cfg)
        videos.append(images.permute(1, 0, 2, 3))
    return torch.stack(videos)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keyframes", type=Path, help="keyframe model folder (default: bundled)")
    parser.add_argument("--interp", type=Path, help="interpolation model folder (default: bundled)")
    parser.add_argument("--harivo", type=Path, help="HARIVO model folder (default: bundled; 'none' to skip)")
    parser.add_argument("--skip-fusionframes", action="store_true", help="measure HARIVO only")
    parser.add_argument("--n", type=int, default=24, help="prompts from the alignment set")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--cfg", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_grad_enabled(False)

    prompts = PROMPTS.read_text().split("\n")[: args.n]
    prompts = [p for p in prompts if p]
    seeds = [args.seed + i for i in range(len(prompts))]
    keyframe_model = from_pretrained(args.keyframes or default_model("generate"))
    interp = from_pretrained(args.interp or default_model("interpolate"))
    vae = from_pretrained(find_by_tag(keyframe_model.base.config.vae))
    encoder = TextEncoder()
    text, null = encoder.encode(prompts), encoder.encode([""])
    noise = [torch.Generator().manual_seed(s) for s in seeds]

    if not args.skip_fusionframes:
        keyframes = fusionframes.sample_keyframes(keyframe_model, text.tokens, text.mask, null.tokens[0], null.mask[0],
                                                  steps=args.steps, cfg=args.cfg, generator=noise).latents
        video = fusionframes.interpolate(interp, keyframes, steps=args.steps,
                                         generator=torch.Generator().manual_seed(args.seed)).latents
        pipeline = frame_difference(decode(vae, video))
        single = frame_difference(decode(vae, per_frame_t2i(keyframe_model.base, text, null, video.shape[2], seeds,
                                                              args.steps, args.cfg)))
        print(f"{len(prompts)} prompts, {video.shape[2]} frames, {args.steps} DDIM steps, cfg {args.cfg:g}")
        print(f"  FusionFrames pipeline     mean |dframe| {pipeline:7.2f}")
        print(f"  per-frame T2I, same seeds mean |dframe| {single:7.2f}")
        print(f"  ratio pipeline / per-frame T2I = {pipeline / single:.3f}")

    if str(args.harivo) != "none":
        harivo = from_pretrained(args.harivo or default_model("harivo"))
        results = {}
        for alpha in (40.0, 0.0):
            noise = [torch.Generator().manual_seed(s) for s in seeds]
            latents = harivo_pipeline.generate(harivo, text.tokens, text.mask, null.tokens[0], null.mask[0],
                                               steps=args.steps, generator=noise, alpha=alpha).latents
            results[alpha] = frame_difference(decode(vae, latents))
        print(f"{len(prompts)} prompts, HARIVO {latents.shape[2]} frames, {args.steps} DDIM steps, its default cfg")
        print(f"  HARIVO alpha 40           mean |dframe| {results[40.0]:7.2f}")
        print(f"  HARIVO alpha 0            mean |dframe| {results[0.0]:7.2f}")
        print(f"  ratio alpha 40 / alpha 0 = {results[40.0] / results[0.0]:.3f}")


if __name__ == "__main__":
    main()
