"""Copy a trained model folder into vidtool/defaults/NAME as a bundled default.

Weights are stored as float16 (halving the package) only when that changes the model's decoded
output by less than the quality we report: the reconstruction PSNR of fp16 vs fp32 weights on the
given clip must stay above 45 dB, else float32 is kept. The recipe's command, data seed and measured
quality go into the folder's README.md.

    python recipes/tiny/bundle.py runs/tiny/cm-vae cm-vae-tiny --clip data/shapes/clips/000000.mp4 --note "..."
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from vidtool import checkpoint
from vidtool.atomic import atomic_path
from vidtool.metrics.frame_quality import psnr_frames
from vidtool.video import frames_from_model, frames_to_model, read_video

DEFAULTS = Path(__file__).resolve().parents[2] / "vidtool" / "defaults"


def reconstruct(folder: Path, clip: torch.Tensor):
    model = checkpoint.from_pretrained(folder)
    with torch.inference_mode():
        return frames_from_model(model.decode(model.encode(clip).latents))[0].numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path)
    parser.add_argument("name")
    parser.add_argument("--clip", type=Path, required=True, help="a 16-frame clip to compare fp16 and fp32 weights on")
    parser.add_argument("--note", default="", help="markdown appended to the folder's README.md")
    args = parser.parse_args()

    dest = DEFAULTS / args.name
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(args.source / checkpoint.CONFIG_NAME, dest / checkpoint.CONFIG_NAME)
    weights = load_file(args.source / checkpoint.WEIGHTS_NAME)
    half = {k: v.half() if v.is_floating_point() else v for k, v in weights.items()}
    with atomic_path(dest / checkpoint.WEIGHTS_NAME) as tmp:
        save_file(half, str(tmp), metadata={"vidtool.family": json.loads((dest / "config.json").read_text())["family"]})

    clip = frames_to_model(torch.from_numpy(read_video(args.clip, max_frames=16).frames[None]))
    agreement = float(psnr_frames(reconstruct(args.source, clip), reconstruct(dest, clip)).mean())
    if agreement < 45:
        shutil.copyfile(args.source / checkpoint.WEIGHTS_NAME, dest / checkpoint.WEIGHTS_NAME)
    dtype = "float16" if agreement >= 45 else "float32"
    (dest / "README.md").write_text(f"# {args.name}\n\nWeights stored as {dtype} (fp16 vs fp32 reconstruction agreement "
                                    f"{agreement:.1f} dB).\n\n{args.note}\n")
    print(f"{dest}: {dtype}, fp16/fp32 agreement {agreement:.1f} dB")


if __name__ == "__main__":
    main()
