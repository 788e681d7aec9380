"""Run a `vidtool` stage inside the test process: the data-stage tests call stages many times, and a
subprocess pays for importing torch and transformers on each call. The subprocess runner in conftest
stays the one for exit-status and kill behaviour."""

from __future__ import annotations

ARRAY_VARIABLES = ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN")


def run_stage(*args) -> int:
    """`vidtool ARGS…` in process; returns the exit status (0, or what the CLI exits with)."""
    from stages.cli import main

    try:
        main(["--quiet", *map(str, args)])
    except SystemExit as e:
        return int(e.code or 0)
    return 0


def in_process_stages(monkeypatch):
    """For a test's `stage` fixture: clears the SLURM array variables (a test sets them where it means
    to) and returns `run_stage`."""
    for name in ARRAY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return run_stage
