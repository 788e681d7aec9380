"""How close does each `--scheduler` get in few steps? FusionFrames keyframes (bundled
`keyframes-tiny`) for the alignment prompts, every sampler at --steps, against a --reference-steps
DDIM solution from the same noise, measured side by side in one run.

    python benchmarks/samplers.py --steps 10 --reference-steps 100

DDIM (eta 0), DPM-Solver++ 2M, UniPC and Euler integrate the same probability-flow ODE, so they
should land near the fine DDIM solution; DDPM (ancestral) draws fresh noise every step and lands
elsewhere by design. Prints, per sampler, the relative L2 distance ||x - x_ref|| / ||x_ref|| (mean
over prompts) and the time per prompt.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

PROMPTS = Path(__file__).resolve().parents[1] / "recipes" / "tiny" / "alignment-prompts.txt"


def main() -> None:
    from vidtool.checkpoint import from_pretrained
    from vidtool.diffusion.schedulers import SAMPLERS
    from vidtool.model_store import default_model
    from vidtool.pipelines.fusionframes import sample_keyframes
    from vidtool.text import TextEncoder

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="keyframes folder (default: the bundled keyframes-tiny)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--reference-steps", type=int, default=100)
    parser.add_argument("--n", type=int, default=8, help="prompts from recipes/tiny/alignment-prompts.txt")
    args = parser.parse_args()

    model = from_pretrained(args.model or default_model("generate"))
    prompts = PROMPTS.read_text().split("\n")[: args.n]
    encoder = TextEncoder(None)
    text, null = encoder.encode(prompts), encoder.encode([""])

    def run(name: str, steps: int) -> tuple[torch.Tensor, float]:
        started = time.perf_counter()
        with torch.inference_mode():
            out = sample_keyframes(model, text.tokens, text.mask, null.tokens[0], null.mask[0], steps=steps,
                                   scheduler=name, generator=[torch.Generator().manual_seed(i) for i in range(len(prompts))])
        return out.latents, (time.perf_counter() - started) / len(prompts)

    reference, _ = run("ddim", args.reference_steps)
    print(f"{len(prompts)} prompts, {args.steps} steps vs {args.reference_steps}-step DDIM, "
          f"{torch.get_num_threads()} threads")
    for name in SAMPLERS:
        latents, seconds = run(name, args.steps)
        distance = ((latents - reference).flatten(1).norm(dim=1) / reference.flatten(1).norm(dim=1)).mean()
        print(f"  {name:6s} relative distance {distance:.3f}   {seconds:.2f} s/prompt")


if __name__ == "__main__":
    main()
