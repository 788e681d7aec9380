"""The ceiling an autoencoder puts on the shapes prompt-alignment probe: probe hit rates of its
reconstructions of held-out clips of the kind the 24-prompt alignment set asks for.

A latent generator can at best produce what its autoencoder decodes, so if the decoded round trip
of a real "a red circle moving left" clip loses the colour or the motion, no generator in that
latent space can score it. The clips: the held-out shapes set of benchmarks/reconstruction.py
(seed 1, 16 frames, 64x64; the training data uses seed 0), keeping those whose caption names red
or blue and no background, as the alignment prompts do (distractor objects stay, as in training).
Each clip and its reconstruction are read with `vidtool.metrics.shapes_probe.read_clip` and scored
against the clip's caption.

    python benchmarks/alignment_ceiling.py                                # the bundled movq-tiny
    python benchmarks/alignment_ceiling.py --model vidtool/defaults/movq-tiny-video --n 1000
"""

from __future__ import annotations

import argparse
from pathlib import Path

from reconstruction import SIZE, held_out_set, reconstruct

COLOURS = ("red", "blue")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, action="append",
                        help="autoencoder folder; repeat to compare (default: the bundled movq-tiny)")
    parser.add_argument("--n", type=int, default=200, help="held-out shapes clips to draw from (default 200)")
    parser.add_argument("--seed", type=int, default=1, help="held-out set seed (default 1; training uses 0)")
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/vidtool-heldout"))
    args = parser.parse_args()

    import numpy as np

    from vidtool.autoencoders.tiling import default_tiling
    from vidtool.checkpoint import from_pretrained
    from vidtool.data.clips import ClipDataset
    from vidtool.data.manifest import read_manifest
    from vidtool.metrics.shapes_probe import HIT_NAMES, hits, prompt_target, read_clip
    from vidtool.model_store import BUNDLED

    manifest = held_out_set("shapes", args.data_dir, args.n, args.seed, 16)
    records = read_manifest(manifest)[: args.n]
    chosen = [i for i, r in enumerate(records) if r["color"] in COLOURS and not r.get("background")]
    dataset = ClipDataset(manifest, frames=16, size=SIZE)
    clips = np.stack([dataset[i]["video"].numpy() for i in chosen])
    targets = np.stack([prompt_target(records[i]["caption"]) for i in chosen])
    print(f"{len(chosen)} of {len(records)} held-out clips are red or blue shapes on the plain background")

    def report(name: str, videos) -> None:
        rates = hits(np.stack([read_clip(video).as_indices() for video in videos]), targets).mean(0)
        print(f"  {name:22s}" + "  ".join(f"{n} {v:6.1%}" for n, v in zip(HIT_NAMES, rates)))

    report("source clips", clips)
    for folder in args.model or [BUNDLED / "movq-tiny"]:
        model = from_pretrained(folder, device="cpu")
        tiling = default_tiling(model, None, None)
        report(Path(folder).name, np.concatenate([reconstruct(model, clips[start:start + 8], "cpu", tiling)
                                                  for start in range(0, len(clips), 8)]))


if __name__ == "__main__":
    main()
