"""Is FusionFrames' interpolation faster than masked frame interpolation (MFI) for the same work?

    python benchmarks/interpolation.py                        # random `tiny` models, CPU
    python benchmarks/interpolation.py --steps 25 --keyframes 16 --device cuda

Both models are built from one random-weight `tiny` T2I U-Net (vidtool.generators.t2i), as the paper
builds both from the same T2I weights (§6.3, App. 10); weights do not change the run time. Both
interpolate the same random keyframes [B, 4, T, 8, 8] -> [B, 4, 4T-3, 8, 8] with the same sampler,
steps and context guidance (w = 0.25). Runs alternate (FusionFrames, MFI, FusionFrames, ...) after
one warm-up each, and the median wall time of each is reported, with MFI / FusionFrames.
Paper (§6.3, Figure 7): FusionFrames takes less than a third of MFI's time, i.e. ratio > 3.
Per step FusionFrames' U-Net sees one image per keyframe pair, MFI five (two keyframes + three
frames), both doubled by guidance: the ideal ratio is 5 where the U-Net dominates.

Results go to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

RATIO_GOAL = 3.0


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="sampling steps per interpolation")
    parser.add_argument("--keyframes", type=int, default=8, help="keyframes T per clip")
    parser.add_argument("--batch", type=int, default=2, help="clips B")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per method")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    import torch

    from vidtool.generators.interpolation import InterpolationConfig, InterpolationModel
    from vidtool.generators.masked_interpolation import MaskedInterpolationModel
    from vidtool.generators.t2i import T2IModel, preset
    from vidtool.pipelines import fusionframes

    torch.manual_seed(0)
    base = T2IModel(preset("tiny"))
    models = {
        "FusionFrames": InterpolationModel.from_base(base, InterpolationConfig(base=base.config)),
        "MFI": MaskedInterpolationModel.from_base(base, InterpolationConfig(base=base.config)),
    }
    for model in models.values():
        model.to(args.device).eval()
    keyframes = torch.randn(args.batch, base.config.latent_channels, args.keyframes, 8, 8, device=args.device)

    def run(model) -> float:
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        fusionframes.interpolate(model, keyframes, steps=args.steps, guidance=0.25,
                                 generator=torch.Generator(args.device).manual_seed(0))
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - start

    log(f"warm-up; then {args.repeats} alternating runs of each")
    for model in models.values():
        run(model)
    times: dict[str, list[float]] = {name: [] for name in models}
    for i in range(args.repeats):
        for name, model in models.items():
            times[name].append(run(model))
        log(f"  run {i + 1}/{args.repeats}")
    median = {name: statistics.median(t) for name, t in times.items()}
    ratio = median["MFI"] / median["FusionFrames"]
    frames = 4 * args.keyframes - 3
    print(f"interpolation of {args.batch} x {args.keyframes} keyframes -> {frames} frames, {args.steps} DDIM steps, "
          f"w = 0.25, device {args.device}, torch threads {torch.get_num_threads()}")
    print(f"{'method':<14}{'median s':>10}{'runs (s)':>30}")
    for name, t in times.items():
        print(f"{name:<14}{median[name]:>10.3f}{'  '.join(f'{x:.3f}' for x in t):>30}")
    print(f"MFI / FusionFrames = {ratio:.2f}  (paper: > {RATIO_GOAL:g}; {'met' if ratio > RATIO_GOAL else 'NOT met'})")


if __name__ == "__main__":
    main()
