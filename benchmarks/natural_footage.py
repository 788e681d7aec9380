"""Reconstruction of natural footage at its own size, the way a user runs it: `encode | decode` and
`tokenize | decode` with the bundled defaults and no flags.

    python benchmarks/natural_footage.py                       # the bundled defaults, through the CLI
    python benchmarks/natural_footage.py --model runs/x --direct   # one model folder, in process

The clips (`vidtool.data.scenes.natural_test_clips`) show the pictures no bundled autoencoder trains
on (scikit-image's astronaut, coffee and camera) as camera footage: handheld pans and zooms, layers
moving in front of each other, lighting change and sensor noise, at 176x144 (QCIF), 256x144 (16:9)
and 128x128, 32 frames at 8 fps. Each is written as an H.264 mp4 (so it carries a codec's
statistics, as camera files do) and that mp4, decoded, is the reference.

Through the CLI (default) the score includes decode's own H.264 write, as a user's out.mp4 does;
`--direct` scores the model's round trip in memory (what training can improve). Per clip PSNR is
the mean of per-frame PSNRs; a model's score is the mean over clips. `--sheet DIR` writes contact
sheets (reference row above reconstruction) to look for blockiness.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def make_clips(folder: Path, frames: int) -> list[tuple[str, Path]]:
    from vidtool.data.scenes import natural_test_clips
    from vidtool.video import write_video

    paths = []
    for name, clip in natural_test_clips(frames=frames):
        path = folder / f"{name}.mp4"
        if not path.exists():
            write_video(path, clip, 8.0, crf=18)
        paths.append((name, path))
    return paths


def frame_psnr(reference, reconstruction) -> float:
    import numpy as np

    from vidtool.video import psnr

    return float(np.mean([psnr(a, b) for a, b in zip(reference, reconstruction)]))


def through_cli(path: Path, role: str, model: str | None, work: Path):
    from vidtool.video import read_video

    out = work / f"{path.stem}.{role}.mp4"
    stage = [sys.executable, "-m", "stages.cli", "--quiet", role, str(path)] + (["--model", model] if model else [])
    encoded = subprocess.run(stage, check=True, capture_output=True).stdout
    subprocess.run([sys.executable, "-m", "stages.cli", "--quiet", "decode", "-", "-o", str(out)], input=encoded,
                   check=True, capture_output=True)
    return read_video(out).frames


def direct(path: Path, model):
    """The model's round trip in memory, with the tiling `encode`/`decode` use at this frame size."""
    from reconstruction import (
        reconstruct,  # benchmarks/reconstruction.py, beside this script
    )

    from vidtool.autoencoders.tiling import default_tiling
    from vidtool.video import read_video

    clip = read_video(path).frames[None]
    tiling = default_tiling(model, None, None, frame_pixels=clip.shape[2] * clip.shape[3])
    return reconstruct(model, clip, "cpu", tiling)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", help="model folder (repeat); default: the bundled encode "
                                                         "and tokenize defaults")
    parser.add_argument("--direct", action="store_true", help="score the in-memory round trip, not the CLI's mp4")
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--clips", default=None, help="folder to keep the test clips in (default: a temp folder)")
    parser.add_argument("--sheet", type=Path, help="write reference/reconstruction contact sheets here")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    from vidtool import checkpoint, model_store
    from vidtool.video import read_video, write_contact_sheet

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        clip_dir = Path(args.clips) if args.clips else work
        clip_dir.mkdir(parents=True, exist_ok=True)
        clips = make_clips(clip_dir, args.frames)
        if args.model:
            runs = [(None, m) for m in args.model]
        else:
            runs = [("encode", None), ("tokenize", None)]
        results = []
        for role, model_path in runs:
            folder = Path(model_path) if model_path else model_store.default_model(role)
            model = checkpoint.from_pretrained(folder)
            role = role or ("tokenize" if model.family == "mbq-vae" else "encode")
            label = f"{role} ({folder.name})"
            scores = {}
            for name, path in clips:
                reference = read_video(path).frames
                rec = direct(path, model) if args.direct else through_cli(path, role, model_path, work)
                scores[name] = frame_psnr(reference, rec)
                log(f"{label} {name}: {scores[name]:.2f} dB")
                if args.sheet:
                    import numpy as np

                    args.sheet.mkdir(parents=True, exist_ok=True)
                    rows = np.concatenate([reference[::4][:8], rec[::4][:8]])
                    write_contact_sheet(args.sheet / f"{folder.name}-{name}.png", rows, columns=min(8, len(reference[::4])))
            mean = sum(scores.values()) / len(scores)
            results.append({"stage": role, "model": checkpoint.model_tag(folder), "folder": str(folder),
                            "psnr": scores, "mean_psnr": mean, "path": "in-memory" if args.direct else "cli"})
        print(f"{'stage (model)':40s} " + " ".join(f"{name:>20s}" for name, _ in clips) + f" {'mean':>8s}")
        for r in results:
            print(f"{r['stage'] + ' (' + Path(r['folder']).name + ')':40s} "
                  + " ".join(f"{r['psnr'][name]:18.2f}dB" for name, _ in clips) + f" {r['mean_psnr']:6.2f}dB")
        if args.json:
            args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
