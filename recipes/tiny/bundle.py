"""Turn a trained model folder into a bundled default: fp16 weights, config, and a README that
records how it was made and how good it is.

    python recipes/tiny/bundle.py runs/tiny/movq-image movq-tiny \
        --command "bash recipes/tiny/train_vae.sh" --quality runs/tiny/movq-quality.json

Writes vidtool/defaults/NAME/ (or --dest). Float tensors are stored as float16 (the models load
them into float32); the folder's config gains `extra.recipe` with the command, the data seed, the
measured quality and the run folder it came from (relative to the current directory), so
`vidtool info` shows them. `--codes-of TAG` (repeatable) sets config.json's `codes_of`, the tags
whose latents or token ids this model decodes besides its own, in the order given, in place of
those training recorded. The README written here is the start of the model card; the committed
cards (vidtool/defaults/*/README.md) add each model's history by hand.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch

from vidtool.checkpoint import from_pretrained, model_tag, read_config, save_pretrained

DEFAULTS = Path(__file__).resolve().parents[2] / "vidtool" / "defaults"


def recorded_path(source: Path) -> str:
    """`source` as the recipe names it: relative to the current directory, so no machine's
    absolute paths end up in a committed config."""
    if not source.is_absolute():
        return source.as_posix()
    return Path(os.path.relpath(source, Path.cwd())).as_posix()


def bundle(source: Path, name: str, command: str, quality: dict, data_seed: int, dest: Path,
           codes_of: list[str] | None = None) -> Path:
    model = from_pretrained(source)
    model.to(torch.float16)
    if codes_of:
        model.codes_of = list(dict.fromkeys(codes_of))
    folder = dest / name
    extra = dict(read_config(source).get("extra", {}))
    extra["recipe"] = {"command": command, "data_seed": data_seed, "quality": quality,
                       "trained_from": recorded_path(source)}
    save_pretrained(model, folder, extra=extra)
    lines = [f"# {name}", "", f"`{model_tag(folder)}` — bundled default, float16 weights.", "",
             "## How it was made", "", "```sh", command.strip(), "```", "", f"Data seed: {data_seed} "
             "(evaluation clips use seed 1, never seen in training).", "", "## Measured quality", ""]
    lines += [f"- {key}: {value}" for key, value in quality.items()] or ["- not measured"]
    (folder / "README.md").write_text("\n".join(lines) + "\n")
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="trained model folder")
    parser.add_argument("name", help="bundled folder name, e.g. movq-tiny")
    parser.add_argument("--command", required=True, help="the commands that trained it")
    parser.add_argument("--quality", type=Path, help="JSON file of measured numbers (flat dict)")
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--codes-of", action="append", metavar="TAG",
                        help="family@digest whose codes this model decodes (repeatable; replaces the recorded list)")
    parser.add_argument("--dest", type=Path, default=DEFAULTS)
    args = parser.parse_args()
    quality = json.loads(args.quality.read_text()) if args.quality else {}
    folder = bundle(args.source, args.name, args.command, quality, args.data_seed, args.dest, args.codes_of)
    print(f"{folder}: {model_tag(folder)}")


if __name__ == "__main__":
    main()
