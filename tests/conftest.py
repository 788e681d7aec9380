"""Shared fixtures: run the real `vidtool` command in a subprocess, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_vidtool(*args: str, input: bytes | None = None, cwd: Path | None = None, env: dict | None = None,
                timeout: float = 300) -> subprocess.CompletedProcess:
    """`vidtool ARGS…` with stdin from `input` (or /dev/null) and captured stdout/stderr bytes."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "stages.cli", *map(str, args)], input=input,
                          stdin=None if input is not None else subprocess.DEVNULL, capture_output=True,
                          cwd=cwd, env=full_env, timeout=timeout)


@pytest.fixture
def vidtool():
    return run_vidtool


@pytest.fixture(autouse=True)
def _restore_stage_settings():
    """Stages called in process set the global options (`--quiet`, `--device`, ...) in
    stages.context.settings; every test must start from the defaults. They are reset rather than
    snapshotted: a module-scoped fixture that runs a stage sets them before a function's snapshot."""
    import dataclasses

    from stages.context import Settings, settings

    for key, value in dataclasses.asdict(Settings()).items():
        setattr(settings, key, value)
    yield
    for key, value in dataclasses.asdict(Settings()).items():
        setattr(settings, key, value)


@pytest.fixture(scope="session")
def _default_torch_threads() -> int:
    import torch

    return torch.get_num_threads()


@pytest.fixture(autouse=True)
def _restore_torch_threads(_default_torch_threads):
    """Tests that pin torch to one thread (for bit-exact comparisons) must not change the numbers of
    the tests after them: a CPU convolution's last bits depend on the thread count. Restored to the
    session's own count, not a per-test snapshot: a module-scoped fixture that pins the threads runs
    before that snapshot (tests that need one thread pin it in their own body)."""
    import torch

    yield
    torch.set_num_threads(_default_torch_threads)


@pytest.fixture
def one_rank_group(monkeypatch):
    """A 1-rank gloo process group in this process: FSDP2's code path on the CPU (the CUDA paths'
    emulation; the group's address is this test's only)."""
    import socket

    import torch.distributed as dist

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(port))
    dist.init_process_group("gloo", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """Assert the documented user-error contract (exit 2, one stderr line, no traceback); return it."""
    err = result.stderr.decode()
    assert result.returncode == 2, (result.returncode, err)
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def stage(monkeypatch):
    """A stage run in process (stage_runner.run_stage), with the SLURM array variables cleared."""
    from stage_runner import in_process_stages

    return in_process_stages(monkeypatch)
