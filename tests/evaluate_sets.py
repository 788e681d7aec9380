"""Video sets and in-process CLI runs shared by the evaluate tests."""

from __future__ import annotations

import numpy as np
import torch

from vidtool import tensorfile
from vidtool.tensorfile import TensorFile


def videos(count: int, frames: int = 17, size: int = 24, seed: int = 0, bright: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 200, (count, 1, size, size, 3))
    drift = rng.integers(-8, 9, (count, frames, 1, 1, 3)).cumsum(axis=1)
    return torch.from_numpy(np.clip(base + drift + bright, 0, 255).astype(np.uint8))


def save_videos(path, clips: torch.Tensor, prompts: list[str] | None = None):
    tf = TensorFile(kind="video", tensors={"video": clips}, fps=8.0)
    if prompts:
        tf.set_prompts(prompts)
    tensorfile.save(tf, path)
    return path


def run_here(capsys, *args) -> tuple[int, str]:
    """The CLI in this process (no interpreter start-up): exit status and stderr."""
    from stages.cli import main

    try:
        main([str(a) for a in args])
        status = 0
    except SystemExit as exit_:
        status = exit_.code
    return status, capsys.readouterr().err


def one_line_error_here(capsys, *args) -> str:
    status, err = run_here(capsys, *args)
    lines = [line for line in err.splitlines() if line.strip()]
    assert status == 2 and "Traceback" not in err and len(lines) == 1, (status, err)
    return lines[0]
