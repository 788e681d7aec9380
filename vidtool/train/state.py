"""The resume state in `<out>/train_state/`: `state.json` plus one safetensors file, no pickle.

`state.json` holds the counters, the config and the structure of the optimizer and grad-scaler state
dicts; every tensor of them (and the trained weights, and the EMA) lives in
`tensors-<step>.safetensors`, which `state.json` names. The tensors are written first and
`state.json` last, each atomically, so replacing `state.json` is the commit: a run killed at any
moment leaves the previous complete state, never a mix. Stale tensor files are removed afterwards.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from vidtool.atomic import atomic_path, atomic_write_text
from vidtool.errors import UserError

STATE_DIR = "train_state"
STATE_NAME = "state.json"
VERSION = 1


@dataclass
class TrainingState:
    step: int  # optimizer updates done
    samples_seen: int  # position in the run's sample stream, over all ranks
    dataset_size: int
    world_size: int
    config: dict[str, Any]  # the TrainConfig of the run that wrote it, for the record
    model: dict[str, torch.Tensor]  # trained weights (not the EMA)
    optimizer: dict[str, Any]
    scaler: dict[str, Any]
    ema: dict[str, torch.Tensor] | None
    # Bucketed runs (vidtool.data.buckets): the position is a batch number, and the plan's
    # description must match on resume; a plain run keeps 0 and None.
    batches_seen: int = 0
    data_order: str | None = None


def save_state(folder: str | Path, state: TrainingState) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, tensor in state.model.items():
        tensors[f"model/{name}"] = _on_cpu(tensor, seen)
    for name, tensor in (state.ema or {}).items():
        tensors[f"ema/{name}"] = _on_cpu(tensor, seen)
    doc = {
        "version": VERSION,
        "step": state.step,
        "samples_seen": state.samples_seen,
        "batches_seen": state.batches_seen,
        "data_order": state.data_order,
        "dataset_size": state.dataset_size,
        "world_size": state.world_size,
        "config": state.config,
        "ema": state.ema is not None,
        "optimizer": _pack(state.optimizer, tensors, "optimizer", seen),
        "scaler": _pack(state.scaler, tensors, "scaler", seen),
        "tensors": f"tensors-{state.step:08d}.safetensors",
    }
    with atomic_path(folder / doc["tensors"]) as tmp:
        save_file(tensors, str(tmp))
    atomic_write_text(folder / STATE_NAME, json.dumps(doc, indent=1) + "\n")
    for stale in folder.glob("tensors-*.safetensors"):
        if stale.name != doc["tensors"]:
            stale.unlink()


def load_state(folder: str | Path, tensors: bool = True) -> TrainingState | None:
    """The state saved in `folder`, or None when there is none. `tensors=False` reads the counters
    and config only (model, optimizer and EMA left empty): the ranks that receive them from rank 0."""
    folder = Path(folder)
    path = folder / STATE_NAME
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid JSON ({e.msg}); delete {folder} to start the run afresh") from e
    if doc.get("version") != VERSION:
        raise UserError(f"{path} has version {doc.get('version')!r}, this vidtool reads version {VERSION}")
    if not tensors:
        return TrainingState(step=doc["step"], samples_seen=doc["samples_seen"], dataset_size=doc["dataset_size"],
                             world_size=doc["world_size"], config=doc["config"], model={}, optimizer={}, scaler={},
                             ema=None, batches_seen=doc.get("batches_seen", 0), data_order=doc.get("data_order"))
    try:
        tensors = load_file(str(folder / doc["tensors"]))
    except Exception as e:  # safetensors raises several types for missing or corrupt files
        raise UserError(f"cannot read the training tensors named by {path}: {str(e).splitlines()[0]}") from e
    return TrainingState(
        step=doc["step"],
        samples_seen=doc["samples_seen"],
        dataset_size=doc["dataset_size"],
        world_size=doc["world_size"],
        config=doc["config"],
        model=_with_prefix(tensors, "model/"),
        optimizer=_unpack(doc["optimizer"], tensors),
        scaler=_unpack(doc["scaler"], tensors),
        ema=_with_prefix(tensors, "ema/") if doc["ema"] else None,
        batches_seen=doc.get("batches_seen", 0),  # states written before bucketing have neither
        data_order=doc.get("data_order"),
    )


def _on_cpu(tensor: torch.Tensor, seen: set[int]) -> torch.Tensor:
    """The tensor on the CPU, copied only when it is not there already or shares its storage with one
    saved before (safetensors refuses shared storage: tied weights): a gathered state is not doubled."""
    tensor = tensor.detach().to("cpu").contiguous()
    storage = tensor.untyped_storage().data_ptr()
    if storage in seen:
        return tensor.clone()
    seen.add(storage)
    return tensor


def _with_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def _pack(obj: Any, tensors: dict[str, torch.Tensor], path: str, seen: set[int]) -> Any:
    """A state dict as JSON: tensors move to `tensors` under `path`; containers are tagged so that
    tuples stay tuples and integer keys stay integers (the optimizer's state is keyed by int)."""
    if isinstance(obj, torch.Tensor):
        tensors[path] = _on_cpu(obj, seen)
        return {"tensor": path}
    if isinstance(obj, dict):
        return {"dict": [[key, _pack(value, tensors, f"{path}/{key}", seen)] for key, value in obj.items()]}
    if isinstance(obj, (list, tuple)):
        kind = "tuple" if isinstance(obj, tuple) else "list"
        return {kind: [_pack(value, tensors, f"{path}/{i}", seen) for i, value in enumerate(obj)]}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"a training state cannot hold a {type(obj).__name__} (at {path})")


def _unpack(node: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if not isinstance(node, dict):
        return node
    ((kind, value),) = node.items()
    if kind == "tensor":
        return tensors[value]
    if kind == "dict":
        return {key: _unpack(item, tensors) for key, item in value}
    items = [_unpack(item, tensors) for item in value]
    return tuple(items) if kind == "tuple" else items
