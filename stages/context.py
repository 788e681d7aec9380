"""Global options shared by every stage (`--device`, `--quiet`, `--debug`) and stderr output."""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from typing import Iterator


@dataclass
class Settings:
    device: str = "auto"
    quiet: bool = False
    debug: bool = False


settings = Settings()


def console():
    """A rich console on stderr: stdout carries data (tensor files) and nothing else."""
    from rich.console import Console

    return Console(stderr=True, quiet=settings.quiet)


def resolve_device() -> str:
    """`auto` means CUDA when a GPU is visible, else CPU."""
    from vidtool.errors import UserError

    import torch

    if settings.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if settings.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu")
    return settings.device


@contextlib.contextmanager
def progress_bar(description: str, total: int | None) -> Iterator:
    """A rich progress bar on stderr (hidden with --quiet); yields `done(count)` to report progress."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TimeRemainingColumn(), console=console(), transient=False, disable=settings.quiet or not sys.stderr.isatty())
    with bar:
        task = bar.add_task(description, total=total)
        yield lambda count: bar.update(task, completed=count)
