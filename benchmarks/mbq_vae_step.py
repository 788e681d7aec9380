"""Cost of one 3D-MBQ-VAE training update on the CPU: the depthwise 3x3x3 convolutions run
channels-first (PyTorch's grouped-conv path) vs channels-last (oneDNN, what `DepthwiseConv3d` does),
a whole 16x64x64 clip vs the 8x32x32 crops of `train_crop`, and one whole clip per update vs two
(per clip); then one clip's encode + decode with `vidtool.nn.conv3d.Conv3d` sending it to oneDNN vs
PyTorch's own choice (its im2col kernel for a single float32 clip), side by side in one run.

The same weights and batch serve every setting; settings alternate and the median of `--repeats`
is reported. Ratios are what carry over to another machine; seconds are this machine's.

    python benchmarks/mbq_vae_step.py                 # the tiny preset with 2**16 codes, batch 8 crops
    python benchmarks/mbq_vae_step.py --threads 2 --repeats 7
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--batch", type=int, default=8, help="crops per update; whole clips use batch/8 per voxel budget")
    args = parser.parse_args()

    import torch
    from torch import nn

    from vidtool.autoencoders.mbq_vae import MBQVAE, DepthwiseConv3d, MBQVAEConfig
    from vidtool.nn.conv3d import Conv3d

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = MBQVAE(MBQVAEConfig(codebook_size=2**16)).train()
    crops = torch.rand(args.batch, 3, 8, 32, 32) * 2 - 1
    clips = torch.rand(max(1, args.batch // 8), 3, 16, 64, 64) * 2 - 1  # the same voxel count
    one_clip, two_clips = torch.rand(1, 3, 16, 64, 64) * 2 - 1, torch.rand(2, 3, 16, 64, 64) * 2 - 1

    def pytorch_paths(depthwise: bool, single_clip: bool) -> None:
        """Per layer, PyTorch's own kernel choice (True) or this project's oneDNN route (False): the
        channels-first grouped conv for `DepthwiseConv3d`, nn.Conv3d's dispatch for `Conv3d`."""
        for module in model.modules():
            if isinstance(module, DepthwiseConv3d):
                swap, name, plain = depthwise, "forward", nn.Conv3d.forward
            elif isinstance(module, Conv3d):
                swap, name, plain = single_clip, "_conv_forward", nn.Conv3d._conv_forward
            else:
                continue
            if swap:
                setattr(module, name, plain.__get__(module))
            else:
                module.__dict__.pop(name, None)

    def step(video: torch.Tensor, channels_first: bool = False) -> float:
        pytorch_paths(depthwise=channels_first, single_clip=False)
        model.train().zero_grad(set_to_none=True)
        start = time.perf_counter()
        model.training_losses({"video": video}, step=0, total_steps=1)["loss"].backward()
        return time.perf_counter() - start

    def code_one_clip(pytorch_choice: bool) -> float:
        pytorch_paths(depthwise=False, single_clip=pytorch_choice)
        model.eval()
        start = time.perf_counter()
        with torch.inference_mode():
            model.decode(model.encode(one_clip).latents)
        return time.perf_counter() - start

    settings = {
        "crops, channels-first depthwise": lambda: step(crops, channels_first=True),
        "crops, channels-last depthwise": lambda: step(crops),
        "whole clips, channels-last depthwise": lambda: step(clips),
        "one whole clip": lambda: step(one_clip),
        "two whole clips": lambda: step(two_clips),
        "coding one clip, PyTorch's choice": lambda: code_one_clip(pytorch_choice=True),
        "coding one clip, oneDNN": lambda: code_one_clip(pytorch_choice=False),
    }
    for measure in settings.values():  # warm-up: oneDNN primitives, allocator
        measure()
    times = {name: [] for name in settings}
    for _ in range(args.repeats):
        for name, measure in settings.items():
            times[name].append(measure())
    median = {name: statistics.median(values) for name, values in times.items()}
    for name, seconds in median.items():
        print(f"{name:40s} {seconds * 1000:8.1f} ms{'' if name.startswith('coding') else ' per update'}")
    first, last = median["crops, channels-first depthwise"], median["crops, channels-last depthwise"]
    print(f"channels-last / channels-first depthwise: {last / first:.2f}x the time "
          f"({first / last:.2f}x faster), {args.threads} thread(s)")
    print(f"{args.batch} crops of 8x32x32 / {clips.shape[0]} whole clip(s) of 16x64x64 (same voxels): "
          f"{last / median['whole clips, channels-last depthwise']:.2f}x the time")
    print(f"per clip, one whole clip per update / two: "
          f"{median['one whole clip'] / (median['two whole clips'] / 2):.2f}x the time")
    pytorch, onednn = median["coding one clip, PyTorch's choice"], median["coding one clip, oneDNN"]
    print(f"encode + decode of one 16x64x64 clip: PyTorch's choice {pytorch * 1000:.1f} ms, "
          f"oneDNN {onednn * 1000:.1f} ms ({pytorch / onednn:.2f}x faster)")

if __name__ == "__main__":
    main()
