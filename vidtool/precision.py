"""Inference precision: which floating dtype a model runs in, and how it gets there.

A model is cast once when it is loaded (`checkpoint.from_pretrained(..., dtype=)`); modules whose
class sets `keep_fp32 = True` stay float32 (the quantizers: a sign or an argmin decides a token id,
and bf16's 8-bit mantissa would flip choices that float32 makes). Pipelines cast their float inputs
to the model's dtype where they enter a network and run it under `autocast_like(model)`, which also
casts the tensors a network makes itself in float32 (timestep embeddings, masks) where they meet a
low-precision weight; samplers keep their state in float32, and what a stage writes is float32
again, so a tensor file does not depend on the precision that made it.

torch is imported inside the functions: the command line checks a `--dtype` name without it.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from vidtool.errors import UserError

if TYPE_CHECKING:
    import torch

NAMES = ("auto", "bf16", "fp16", "fp32")
TORCH_NAMES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def check_name(name: str) -> str:
    if name not in NAMES:
        raise UserError(f"unknown --dtype {name!r}; choose one of {', '.join(NAMES)}")
    return name


def resolve_dtype(name: str, device: str | torch.device) -> torch.dtype:
    """`auto`: bf16 on a CUDA GPU that has it (Ampere and later), fp16 on an older one, fp32 on CPU.
    fp16 is refused on CPU: many CPU kernels (3-D convolutions, group norm) have no half version;
    bf16 runs there (slowly, unless the CPU has AMX), which is how its accuracy is tested."""
    import torch

    kind = torch.device(device).type
    if check_name(name) == "auto":
        if kind != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if kind == "cuda" and name == "bf16" and not torch.cuda.is_bf16_supported():
        raise UserError(f"--dtype bf16: {torch.cuda.get_device_name(device)} has no bfloat16; use --dtype fp16 or auto")
    if kind != "cuda" and name == "fp16":
        raise UserError("--dtype fp16 needs a CUDA GPU: many CPU kernels have no half precision; "
                        "use --dtype bf16 or fp32 on CPU")
    return torch_dtype(name)


def torch_dtype(name: str) -> torch.dtype:
    """bf16, fp16 or fp32 → the torch dtype."""
    import torch

    return getattr(torch, TORCH_NAMES[name])


def enable_tf32() -> None:
    """Let CUDA float32 matmuls and convolutions use TF32 tensor cores (Ampere and later), so the
    float32 parts of a run (fp32 inference, the quantizers) cost little."""
    import torch

    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


def cast(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """Cast the floating parameters and buffers of `model` to `dtype`, keeping `keep_fp32` modules."""
    model.to(dtype)
    for module in model.modules():
        if getattr(module, "keep_fp32", False):
            module.float()
    return model


def model_dtype(model: torch.nn.Module) -> torch.dtype:
    """The reduced precision `model` was cast to, else float32 (also for a stand-in without
    parameters): the dtype its inputs are cast to."""
    import torch

    parameters = model.parameters() if hasattr(model, "parameters") else ()
    return next((p.dtype for p in parameters if p.is_floating_point() and p.dtype != torch.float32), torch.float32)


def autocast_like(model: torch.nn.Module) -> contextlib.AbstractContextManager:
    """`torch.autocast` in the model's reduced precision on its device; nothing for a float32 model."""
    import torch

    dtype = model_dtype(model)
    if dtype == torch.float32:
        return contextlib.nullcontext()
    device = next(model.parameters()).device
    return torch.autocast(device.type, dtype=dtype)
