"""How far each word of a shapes caption reaches into the frozen text-to-image U-Net: the relative
change of its mid-block features when only the colour, only the shape or only the direction word
of the prompt changes, for the same noise and timestep.

FusionFrames' temporal blocks (§4.1) take no text: whatever they learn about the caption's motion
they must read from these features. A word the T2I model barely lets through is a word the
keyframe model can hardly follow. Prompts: the 24-prompt alignment grammar
`a {red|blue} {circle|square|triangle} moving {left|right|up|down}`.

    python benchmarks/t2i_word_reach.py                      # the bundled t2i-tiny
    python benchmarks/t2i_word_reach.py --model runs/tiny/t2i --timesteps 900 500 100
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

WORDS = {"colour": ("red", "blue"), "shape": ("circle", "square", "triangle"), "direction": ("left", "right", "up", "down")}


def prompt(colour: str, shape: str, direction: str) -> str:
    return f"a {colour} {shape} moving {direction}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="t2i folder (default: the bundled t2i-tiny)")
    parser.add_argument("--timesteps", type=int, nargs="+", default=[900, 500, 100])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch

    from vidtool.checkpoint import from_pretrained
    from vidtool.model_store import BUNDLED
    from vidtool.text import TextEncoder

    t2i = from_pretrained(args.model or BUNDLED / "t2i-tiny").eval()
    combos = list(itertools.product(*WORDS.values()))
    text = TextEncoder().encode([prompt(*c) for c in combos])
    captured = {}
    t2i.unet.mid_block.register_forward_hook(lambda module, inputs, output: captured.__setitem__("mid", output))
    generator = torch.Generator().manual_seed(args.seed)
    size = t2i.config.sample_size
    noise = torch.randn(1, t2i.config.latent_channels, size, size, generator=generator).expand(len(combos), -1, -1, -1)

    print(f"relative change of {args.model or 't2i-tiny'}'s mid-block features when one word changes "
          "(mean over all prompt pairs that differ in that word only)")
    print(f"{'timestep':>8}  " + "  ".join(f"{name:>9}" for name in WORDS))
    for t in args.timesteps:
        with torch.inference_mode():
            t2i.predict(noise, torch.full((len(combos),), t), text.tokens, text.mask)
        features = dict(zip(combos, captured["mid"].flatten(1)))
        row = []
        for slot in range(len(WORDS)):
            changes = [(features[a] - features[b]).norm() / features[a].norm()
                       for a, b in itertools.permutations(combos, 2)
                       if a[slot] != b[slot] and all(a[i] == b[i] for i in range(len(WORDS)) if i != slot)]
            row.append(torch.stack(changes).mean().item())
        print(f"{t:>8}  " + "  ".join(f"{value:>9.3f}" for value in row))


if __name__ == "__main__":
    main()
