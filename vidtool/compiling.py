"""`--compile`: the method an inference stage calls at every sampling step or chunk (a denoiser's
`predict`, the token model's `forward`, an autoencoder's `encode`/`decode`) wrapped in
`torch.compile` (TorchInductor, default mode). The first call compiles (tens of seconds on a small
model), later calls run the fused kernels, so it pays off on long sampling runs and big batches.
Inductor needs Triton on a CUDA GPU and a C++ compiler on the CPU; where one is missing the stage
says so in one line and runs the method eagerly.
"""

from __future__ import annotations

import shutil

import torch


def unsupported(device: str | torch.device) -> str | None:
    """Why torch.compile cannot run on `device` here, or None when it can."""
    if torch.device(device).type == "cuda":
        from torch.utils._triton import has_triton

        return None if has_triton() else "Triton is not installed (pip install triton)"
    from torch._inductor import config

    compilers = config.cpp.cxx if isinstance(config.cpp.cxx, tuple) else (config.cpp.cxx,)
    if not any(c and shutil.which(c) for c in compilers):
        return "no C++ compiler on PATH (TorchInductor builds its CPU kernels with g++)"
    return None


def compile_method(model: torch.nn.Module, name: str, device: str | torch.device) -> str | None:
    """Replace `model.<name>` by its compiled version; returns the one-line note when this machine
    cannot compile (the method is then left as it is)."""
    reason = unsupported(device)
    if reason is not None:
        return f"--compile skipped: {reason}; running {type(model).__name__}.{name} eagerly"
    # An instance attribute shadows the class's method; `forward` is what Module.__call__ looks up.
    setattr(model, name, torch.compile(getattr(model, name)))
    return None
