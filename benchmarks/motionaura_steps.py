"""MotionAura generation time: 10 vs 50 masked-diffusion steps, and the spectral transformer with
and without its FFT layers (the paper's "w/o fft" ablation), measured side by side in one run.

The same weights run all four settings (the FFT switch changes no parameter); each setting samples
one prompt the same number of times, alternating, and the median is reported. Ratios are what carry
over to another machine; seconds are this machine's.

    python benchmarks/motionaura_steps.py              # the bundled motionaura-tiny
    python benchmarks/motionaura_steps.py --model runs/tiny/spectral --repeats 5
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from pathlib import Path


def main() -> None:
    import torch

    from vidtool import checkpoint, model_store
    from vidtool.generators.spectral_transformer import SpectralTransformer
    from vidtool.pipelines import motionaura
    from vidtool.text import TextEncoder

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="spectral model folder (default: the bundled one)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--frames", type=int, default=None, help="video frames (default: the model's)")
    args = parser.parse_args()

    torch.set_grad_enabled(False)
    folder = args.model or model_store.default_model("motionaura")
    trained = checkpoint.from_pretrained(folder)
    encoder = TextEncoder(max_length=trained.config.text_max_length)
    text, null = encoder.encode(["a red circle moving right"]), encoder.encode([""])
    models = {}
    for fft in (True, False):
        model = SpectralTransformer(dataclasses.replace(trained.config, fft=fft)).eval()
        model.load_state_dict(trained.state_dict())
        models[fft] = model
    settings = {(steps, fft): [] for steps in (10, 50) for fft in (True, False)}
    for _ in range(args.repeats):
        for (steps, fft), times in settings.items():
            started = time.perf_counter()
            motionaura.generate(models[fft], text.tokens, text.mask, null.tokens[0], null.mask[0], frames=args.frames,
                                steps=steps, generator=[torch.Generator().manual_seed(0)])
            times.append(time.perf_counter() - started)
    median = {key: statistics.median(times) for key, times in settings.items()}
    print(f"model {checkpoint.model_tag(folder)}, {torch.get_num_threads()} threads, median of {args.repeats}")
    for (steps, fft), seconds in median.items():
        print(f"  {steps:>2} steps, fft {'on ' if fft else 'off'}: {seconds:7.2f} s")
    print(f"50 / 10 steps (fft on):       {median[(50, True)] / median[(10, True)]:.2f}x")
    print(f"50 / 10 steps (fft off):      {median[(50, False)] / median[(10, False)]:.2f}x")
    print(f"fft on / off at 10 steps:     {median[(10, True)] / median[(10, False)]:.2f}x")
    print(f"fft on / off at 50 steps:     {median[(50, True)] / median[(50, False)]:.2f}x")


if __name__ == "__main__":
    main()
