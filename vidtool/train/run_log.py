"""What a training run leaves beside its checkpoint for people to watch and trace it: logs for
TensorBoard or Weights & Biases, and run.json (the code's git commit, the package versions and the
digests of the data manifests). Rank 0 alone writes any of it.

    log = RunLog(out_dir, ["tensorboard"], name="t2i", config=resolved_options)
    log.scalars(record)                      # a metrics.jsonl record: {"step": 10, "loss": …, "lr": …}
    log.image("samples", sheet, step)        # uint8 [H, W, 3]
    log.close()
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from vidtool import __version__
from vidtool.atomic import atomic_path
from vidtool.errors import UserError

BACKENDS = ("tensorboard", "wandb")
TENSORBOARD_DIR = "tensorboard"
RUN_RECORD = "run.json"
VERSIONED = ("torch", "diffusers", "transformers", "safetensors", "numpy")
EXTRA = "pip install 'vidtool[log]'"


class RunLog:
    """The chosen logging backends, fed the same records."""

    def __init__(self, out_dir: Path, backends: list[str], *, name: str, config: dict[str, Any]):
        unknown = sorted(set(backends) - set(BACKENDS))
        if unknown:
            raise UserError(f"unknown --log {', '.join(unknown)}; known: {', '.join(BACKENDS)}")
        self.tensorboard = self.wandb = None
        if "tensorboard" in backends:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:
                raise UserError(f"--log tensorboard needs the tensorboard package: {EXTRA}") from e
            self.tensorboard = SummaryWriter(log_dir=str(out_dir / TENSORBOARD_DIR))
        if "wandb" in backends:
            try:
                import wandb
            except ImportError as e:
                raise UserError(f"--log wandb needs the wandb package: {EXTRA}") from e
            self.wandb = wandb.init(project=os.environ.get("WANDB_PROJECT", "vidtool"), name=name, dir=str(out_dir),
                                    config=config, mode=_wandb_mode(wandb), reinit="finish_previous")

    def scalars(self, record: dict[str, float]) -> None:
        step = int(record["step"])
        values = {f"train/{key}": float(value) for key, value in record.items() if key != "step"}
        if self.tensorboard is not None:
            for tag, value in values.items():
                self.tensorboard.add_scalar(tag, value, step)
            self.tensorboard.flush()
        if self.wandb is not None:
            self.wandb.log(values, step=step)

    def image(self, tag: str, image: np.ndarray, step: int) -> None:
        """A uint8 [H, W, 3] picture (a contact sheet of sample videos)."""
        if self.tensorboard is not None:
            self.tensorboard.add_image(tag, image, step, dataformats="HWC")
            self.tensorboard.flush()
        if self.wandb is not None:
            import wandb

            self.wandb.log({tag: wandb.Image(image)}, step=step)

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
        if self.wandb is not None:
            self.wandb.finish()


def _wandb_mode(wandb) -> str:
    """WANDB_MODE when set; else online only with an API key and a reachable server, since wandb's
    online mode would otherwise wait on the network. An offline run syncs later with `wandb sync`."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if not (os.environ.get("WANDB_API_KEY") or wandb.api.api_key):
        return "offline"
    try:
        socket.create_connection(("api.wandb.ai", 443), timeout=3).close()
    except OSError:
        return "offline"
    return "online"


def record_run(out_dir: Path, *, manifests: list[Path], training_set: Path | None, command: list[str]) -> Path:
    """Append this session (a fresh run or a --resume) to OUT/run.json: the command, the git commit
    of the vidtool checkout (when it is one), the package versions and each manifest's sha256."""
    path = out_dir / RUN_RECORD
    sessions = json.loads(path.read_text())["sessions"] if path.is_file() else []
    sessions.append({
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": command,
        "git": _git_state(Path(__file__).resolve().parents[2]),
        "versions": {"vidtool": __version__, **{name: _version(name) for name in VERSIONED},
                     "python": sys.version.split()[0]},
        "data": [{"manifest": str(m), "sha256": _sha256(m)} for m in manifests],
        "training_set": str(training_set) if training_set is not None else None,
    })
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps({"sessions": sessions}, indent=2) + "\n")
    return path


def _git_state(folder: Path) -> dict[str, Any] | None:
    """The commit the code was run from and whether tracked files differed from it; None outside a checkout."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, check=True,
                              timeout=30).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": dirty}


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
