"""The options every stage shares (`--device`, `--dtype`): accepted before the stage's name, where
`stages.cli` declares them, and after it (`vidtool decode --device cpu --dtype bf16 z.safetensors`),
where `stage_options` adds them to the stage's own; `--compile` only after the name of a stage that
runs networks step after step."""

from __future__ import annotations

from enum import Enum

import typer

from stages import COMPILE_STAGES, PRECISION_STAGES
from stages.context import settings


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


DEVICE_HELP = "Where models run; auto = CUDA when available."
COMPILE_HELP = ("Run the network through torch.compile (TorchInductor): a slow first call, faster later ones; "
                "skipped with a note where this machine cannot compile.")
DTYPE_HELP = ("Inference precision of the networks: auto, bf16, fp16 or fp32; auto = bf16 on CUDA GPUs that have it, "
              "fp16 on older ones, fp32 on CPU. Tensor files are float32 whatever it is.")


def stage_options(name: str) -> list:
    """The global options a stage also takes after its name (`vidtool decode --device cpu ...`);
    given there, they win over the same option before the name. They are built by typer from a
    throwaway command's signature, so they parse like the stage's own options."""

    def store(ctx, param, value):
        if value is not None:
            if param.name == "dtype":
                from vidtool.precision import check_name

                check_name(value)
            setattr(settings, param.name, getattr(value, "value", value))

    options = typer.Typer(add_completion=False)

    @options.command()
    def shared(device: Device = typer.Option(None, help=DEVICE_HELP, show_default=False),
               dtype: str = typer.Option(None, help=DTYPE_HELP, show_default=False),
               compile: bool = typer.Option(None, "--compile", help=COMPILE_HELP, show_default=False)) -> None:
        """Only its options are used."""

    stages_of = {"dtype": PRECISION_STAGES, "compile": COMPILE_STAGES}
    params = [p for p in typer.main.get_command(options).params
              if p.name == "device" or name in stages_of[p.name]]
    for param in params:  # set the global value instead of becoming an argument of the stage's function
        param.callback, param.expose_value = store, False
    return params


def plain_flags(params: list) -> list:
    """A flag is shown by its name(s) alone (`--quiet`, `--resume/--no-resume`): typer would write its
    type as `<bool>`, as if it took a value."""
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    return params
