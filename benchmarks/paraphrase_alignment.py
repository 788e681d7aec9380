"""Prompt following beyond the training captions' wording (issue 31): the README's main command,
`vidtool generate | vidtool interpolate | vidtool decode`, on the 24-prompt alignment set and on its
paraphrases (recipes/tiny/paraphrase-prompts.tsv: synonyms, word order, "to the left" for "left",
never trained on), read by the shapes probe against the colour, shape and direction each paraphrase
asks for. Three seeds by default; item i of a run uses seed + i.

    python benchmarks/paraphrase_alignment.py
    python benchmarks/paraphrase_alignment.py --model runs/tiny/keyframes --seeds 0 100 200
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PARAPHRASES = ROOT / "recipes/tiny/paraphrase-prompts.tsv"
ALIGNMENT = ROOT / "recipes/tiny/alignment-prompts.txt"
COLUMNS = ("colour", "shape", "direction", "colour+direction", "all three")


def read_pairs(path: Path) -> list[tuple[str, str]]:
    pairs = []
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            asked, canonical = line.split("\t")
            pairs.append((asked.strip(), canonical.strip()))
    return pairs


def run_pipeline(prompts: list[str], seed: int, model: str | None, folder: Path) -> np.ndarray:
    """uint8 videos [N, T, H, W, 3] of the main command on `prompts`."""
    from vidtool import tensorfile

    listing, video = folder / f"prompts-{seed}.txt", folder / f"video-{seed}.safetensors"
    listing.write_text("\n".join(prompts) + "\n")
    generate = ["vidtool", "-q", "generate", "--prompts", str(listing), "--seed", str(seed)]
    generate += ["--model", model] if model else []
    command = f"{' '.join(generate)} | vidtool -q interpolate | vidtool -q decode -o {video}"
    subprocess.run(["bash", "-o", "pipefail", "-c", command], check=True)
    return tensorfile.load(video, kinds=["video"]).main.numpy()


def score(videos: np.ndarray, targets: list[str]) -> np.ndarray:
    from vidtool.metrics.shapes_probe import hits, prompt_target, read_clip

    readings = np.stack([read_clip(v).as_indices() for v in videos])
    return hits(readings, np.stack([prompt_target(t) for t in targets]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="keyframes model folder (default: the bundled one)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 100, 200])
    args = parser.parse_args()
    pairs = read_pairs(PARAPHRASES)
    sets = {"alignment prompts": ([c for _, c in pairs], [c for _, c in pairs]),
            "paraphrases": ([a for a, _ in pairs], [c for _, c in pairs])}
    print(f"{len(pairs)} prompts x seeds {args.seeds}; model {args.model or 'bundled keyframes-tiny'}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, (asked, targets) in sets.items():
            per_seed = [score(run_pipeline(asked, seed, args.model, Path(tmp)), targets).mean(axis=0)
                        for seed in args.seeds]
            mean = np.mean(per_seed, axis=0)
            print(f"{name:18s} " + "  ".join(f"{c} {m:.1%}" for c, m in zip(COLUMNS, mean)) +
                  "   colour+direction by seed: " + " ".join(f"{s[3]:.1%}" for s in per_seed))


if __name__ == "__main__":
    main()
