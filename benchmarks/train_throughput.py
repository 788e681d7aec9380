"""Training throughput of one step (forward, backward, AdamW) per family: samples per second and
model-FLOPs utilisation (MFU), measured side by side in one run.

    python benchmarks/train_throughput.py --device cuda                      # paper shapes, batch 1
    python benchmarks/train_throughput.py --device cuda --family spectral dmg --batch 4 --checkpointing
    python benchmarks/train_throughput.py --scale test                       # test-sized models (CPU)

--scale paper (default) takes the first case of each family from benchmarks/memory_plan.py (its
paper's resolution; the frozen T2I base is the SD-1.5-shaped U-Net), built for real on --device with
random weights and a random batch of the trainer's layout, at --batch clips (1 by default: the
paper batches of the autoencoders do not fit one GPU, see memory_plan.py); --scale test takes the
test-sized models of tests/test_checkpointing_every_family.py, which run on a CPU in seconds.

FLOPs are counted once per case by torch.utils.flop_counter.FlopCounterMode (matrix products and
convolutions of the forward and backward pass: the "model FLOPs" of MFU). MFU = FLOPs per step /
seconds per step / the device's peak dense bf16 (fp32 with --precision fp32) FLOP rate, from the
table below or --peak-tflops; a CPU has no entry, so its MFU is printed only with --peak-tflops.
Steps are timed after --warmup untimed ones, the median of --steps.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
# Dense peak TFLOP/s (bf16, fp32) of the GPUs this project meets, from NVIDIA's datasheets.
PEAK_TFLOPS = {"H200": (989.4, 66.9), "H100 SXM": (989.4, 66.9), "H100 PCIe": (756.0, 51.2), "H100": (989.4, 66.9),
               "A100": (312.0, 19.5), "L40S": (362.1, 91.6), "A10": (125.0, 31.2)}


def peak_tflops(device: torch.device, bf16: bool) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, (half, single) in PEAK_TFLOPS.items():  # the more specific names come first
        if key in name:
            return half if bf16 else single
    return None


def paper_cases(device: torch.device, batch: int) -> list[tuple[str, str, callable, callable]]:
    """(family, description, build model, make batch) for the first memory-plan case of each family,
    with memory_plan's meta tensors swapped for random real ones on `device`."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import memory_plan

    def real(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        if dtype.is_floating_point:
            return torch.randn(*shape, dtype=dtype, device=device)
        return torch.ones(*shape, dtype=dtype, device=device)  # masks true, ids and labels 1

    memory_plan.meta, memory_plan.META = real, device
    cases, seen = [], set()
    for make in memory_plan.CASES.values():
        for case in make():
            if case.family in seen:
                continue
            seen.add(case.family)
            cases.append((case.family, f"{case.preset} {case.video}", lambda c=case: c.build()[0],
                          lambda c=case: c.make_batch(batch)))
    return cases


def test_cases(device: torch.device) -> list[tuple[str, str, callable, callable]]:
    sys.path.insert(0, str(ROOT / "tests"))
    from test_checkpointing_every_family import CASES

    def moved(batch: dict) -> dict:
        return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    return [(name, "test-sized", lambda c=case: c.model().to(device), lambda c=case: moved(c.batch()))
            for name, case in CASES.items() if not name.endswith("-gan")]


def one_step(model, batch: dict, optimizer, autocast: torch.dtype | None, device: torch.device) -> None:
    with torch.autocast(device.type, dtype=autocast) if autocast else torch.autocast(device.type, enabled=False):
        loss = model.training_losses(batch, step=0, total_steps=1)["loss"]
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def measure(build, make_batch, *, device, autocast, checkpointing: bool, steps: int, warmup: int):
    from torch.utils.flop_counter import FlopCounterMode

    from vidtool.train import parallel

    torch.manual_seed(0)
    model = build().to(device).train()
    if checkpointing:
        parallel.checkpoint_activations(model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    batch = make_batch()
    samples = next(v.shape[0] for k, v in batch.items() if isinstance(v, torch.Tensor) and not k.startswith("null"))
    counter = FlopCounterMode(display=False)
    with counter:
        one_step(model, batch, optimizer, autocast, device)
    times = []
    for i in range(warmup + steps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        one_step(model, batch, optimizer, autocast, device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return samples, counter.get_total_flops(), statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--scale", choices=("paper", "test"), default="paper")
    parser.add_argument("--family", nargs="*", help="only these families (default: all)")
    parser.add_argument("--batch", type=int, default=1, help="clips per step at --scale paper (default 1)")
    parser.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    parser.add_argument("--checkpointing", action="store_true", help="the trainer's activation checkpointing")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--peak-tflops", type=float, help="the device's peak rate, if not in the table")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    bf16 = args.precision == "bf16"
    peak = args.peak_tflops or peak_tflops(device, bf16)
    cases = paper_cases(device, args.batch) if args.scale == "paper" else test_cases(device)
    if args.family:
        cases = [c for c in cases if c[0] in args.family]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"{name}, {args.precision}{', checkpointing' if args.checkpointing else ''}, median of {args.steps} "
          f"steps; peak {peak or 'unknown'} TFLOP/s\n")
    print("| family | case | samples/step | GFLOP/step | s/step | samples/s | MFU |")
    print("|---|---|---|---|---|---|---|")
    for family, description, build, make_batch in cases:
        try:
            samples, flops, seconds = measure(build, make_batch, device=device, autocast=torch.bfloat16 if bf16 else None,
                                              checkpointing=args.checkpointing, steps=args.steps, warmup=args.warmup)
        except Exception as e:  # one case that does not fit or fails is reported, not fatal
            print(f"| {family} | {description} | — | — | — | — | {type(e).__name__}: {str(e).splitlines()[0][:80]} |")
            continue
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()
        mfu = f"{flops / seconds / (peak * 1e12):.1%}" if peak else "—"
        print(f"| {family} | {description} | {samples} | {flops / 1e9:,.1f} | {seconds:.3f} | {samples / seconds:.2f} "
              f"| {mfu} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
