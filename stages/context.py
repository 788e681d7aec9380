"""Global options shared by every stage (`--device`, `--dtype`, `--quiet`, `--debug`) and stderr output."""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    import torch


@dataclass
class Settings:
    device: str = "auto"
    dtype: str = "auto"
    compile: bool = False
    quiet: bool = False
    debug: bool = False


settings = Settings()


def console():
    """A rich console on stderr: stdout carries data (tensor files) and nothing else."""
    from rich.console import Console

    return Console(stderr=True, quiet=settings.quiet)


def check_output(out, *, inputs=(), suffixes=None) -> None:
    """`vidtool.outputs.check_output` for a stage's `-o`, saying on stderr when it creates the folder;
    `suffixes` default to a tensor file's. First, every input (a path the stage reads) must exist: a
    stage calls this before its heavy imports, so a mistyped path is reported at once, not after torch
    and the models load."""
    from pathlib import Path

    from vidtool import outputs
    from vidtool.errors import UserError

    for path in inputs:
        if path is not None and str(path) != "-" and not Path(path).exists():
            raise UserError(f"no such file: {path}")

    outputs.check_output(out, inputs=inputs, suffixes=suffixes or outputs.TENSOR,
                         say=lambda message: console().print(message, soft_wrap=True))


def clip_summary(frames: int, height: int, width: int, fps: float | None, count: int = 1) -> str:
    """'16 frames of 64×80 (h×w) at 8 fps, 2.0 s' (with `count` > 1: '2 videos of ...')."""
    videos = f"{count} videos of " if count > 1 else ""
    rate = f" at {fps:g} fps, {frames / fps:.1f} s" if fps else ""
    return f"{videos}{frames} frames of {height}×{width} (h×w){rate}"


def say_written(out, what: str, started: float) -> None:
    """A stage's closing line on stderr (none with --quiet): where it wrote what, and how long it took
    since `started` (time.monotonic())."""
    import time

    from rich.markup import escape

    where = "stdout" if str(out) == "-" else str(out)
    console().print(f"[green]wrote[/] {escape(where)}: {escape(what)}; took {time.monotonic() - started:.1f} s",
                    soft_wrap=True, highlight=False)


def resolve_device() -> str:
    """`auto` means CUDA when a GPU is visible, else CPU. On CUDA, float32 matmuls use TF32."""
    from vidtool.errors import UserError
    from vidtool.precision import enable_tf32

    import torch

    if settings.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu")
    device = settings.device if settings.device != "auto" else "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        enable_tf32()
    return device


def resolve_dtype(device: str, auto: str | None = None) -> torch.dtype:
    """The inference dtype of `--dtype` on `device` (`vidtool.precision.resolve_dtype`); `auto`
    replaces the device's choice for `--dtype auto` where a stage needs another (evaluate: fp32)."""
    from vidtool.precision import resolve_dtype as resolve

    return resolve(auto if auto and settings.dtype == "auto" else settings.dtype, device)


def compile_if_asked(model, name: str, device: str) -> None:
    """With `--compile`, `model.<name>` runs through torch.compile (`vidtool.compiling`); where this
    machine cannot compile, a one-line note and the eager method."""
    if not settings.compile:
        return
    from vidtool.compiling import compile_method

    note = compile_method(model, name, device)
    if note is not None:
        console().print(f"[yellow]{note}[/]", soft_wrap=True)


@contextlib.contextmanager
def progress_bar(description: str, total: int | None, *, errors: bool = False, unit: str = "items",
                 log_every: float = 30.0) -> Iterator:
    """A rich progress bar on stderr (hidden with --quiet); yields `done(count, failed=None)` to report
    progress. With `errors` it also shows the rate in `unit`/s and the failures so far. When stderr is
    not a terminal (a cluster job's log), a plain line says the same at most every `log_every` seconds."""
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
    if errors:
        columns += [TextColumn("{task.fields[rate]}"), TextColumn("[red]{task.fields[failed]}")]
    columns += [TimeElapsedColumn(), TimeRemainingColumn()]
    terminal = sys.stderr.isatty()
    bar = Progress(*columns, console=console(), transient=False, disable=settings.quiet or not terminal)
    began, last_line, first = time.perf_counter(), [time.perf_counter()], [None]

    with bar:
        task = bar.add_task(description, total=total, rate="", failed="")

        def done(count: int, failed: int | None = None) -> None:
            now = time.perf_counter()
            first[0] = count if first[0] is None else first[0]  # items found done before this run
            rate = (count - first[0]) / max(now - began, 1e-9)
            shown = {"rate": f"{rate:.2f} {unit}/s" if count > first[0] else "",
                     "failed": f"{failed} failed" if failed else ""}
            bar.update(task, completed=count, **shown)
            finished = total is not None and count >= total
            if not terminal and not settings.quiet and errors and (now - last_line[0] >= log_every or finished):
                last_line[0] = now
                left = f", ETA {format_seconds((total - count) / rate)}" if total and rate > 0 and not finished else ""
                console().print(f"{description}: {count}/{total if total is not None else '?'} {unit}, "
                                f"{rate:.2f} {unit}/s{left}, {failed or 0} failed", soft_wrap=True)

        yield done


def format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m{rest % 60:02d}s" if hours else f"{rest // 60}m{rest % 60:02d}s"
