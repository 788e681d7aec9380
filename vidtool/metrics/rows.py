"""Per-video measurements, the unit that `evaluate` computes, shards, caches and merges.

Every metric first turns each video into a few arrays (per-frame PSNR, an I3D feature vector, a
probe reading …) and only then reduces the whole set to a number. `Rows` holds those arrays, one
list per (role, field), in the set's order; an array's leading axis may be empty where a field
does not apply to an item (e.g. FVD features past the 2048th video). A shard file stores the rows
of a contiguous slice of each set, so concatenating the shards' rows in shard order gives exactly
the rows of an unsharded run, and every reduction — hence every number — is the same.

Shard file: a `dataset-shard` tensor file. For each (role, field) two tensors: `ROLE/FIELD` (the
items' arrays concatenated along their leading axis) and `ROLE/FIELD#len` (each item's leading
size). Metadata `vidtool.evaluate` holds the run's setup (JSON) that all shards must share,
`vidtool.shard` "I/N", and `vidtool.items` the item keys per role.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vidtool.errors import UserError

ROLES = ("generated", "reference")


@dataclass
class Rows:
    keys: dict[str, list[str]] = field(default_factory=lambda: {role: [] for role in ROLES})
    fields: dict[str, dict[str, list[np.ndarray]]] = field(default_factory=lambda: {role: {} for role in ROLES})

    def add(self, role: str, key: str, values: dict[str, np.ndarray]) -> None:
        """Append one item; fields it lacks get an empty entry so every list stays item-aligned."""
        index = len(self.keys[role])
        self.keys[role].append(key)
        columns = self.fields[role]
        for name, value in values.items():
            if name not in columns:
                columns[name] = [None] * index
            columns[name].append(np.asarray(value))
        for name, column in columns.items():
            if len(column) == index:
                column.append(None)

    def column(self, role: str, name: str) -> list[np.ndarray]:
        """The non-empty arrays of a field, in item order."""
        return [v for v in self.fields[role].get(name, []) if v is not None and len(v)]

    def extend(self, other: "Rows") -> None:
        for role in ROLES:
            for i, key in enumerate(other.keys[role]):
                self.add(role, key, {name: col[i] for name, col in other.fields[role].items() if col[i] is not None})


def shard_name(index: int, shards: int) -> str:
    return f"evaluate-shard-{index:05d}-of-{shards:05d}.safetensors"


def save_shard(rows: Rows, setup: dict, index: int, shards: int, folder: str | Path) -> Path:
    import torch

    from vidtool.tensorfile import TensorFile, save

    tensors = {}
    for role in ROLES:
        for name, column in rows.fields[role].items():
            present = [np.asarray(v) for v in column if v is not None and len(v)]
            tensors[f"{role}/{name}#len"] = torch.tensor([0 if v is None else len(v) for v in column], dtype=torch.int64)
            if present:
                tensors[f"{role}/{name}"] = torch.from_numpy(np.ascontiguousarray(np.concatenate(present)))
    path = Path(folder) / shard_name(index, shards)
    tf = TensorFile(kind="dataset-shard", tensors=tensors, extra={
        "evaluate": json.dumps(setup, sort_keys=True), "shard": f"{index}/{shards}", "items": json.dumps(rows.keys)})
    save(tf, path)
    return path


def same_run(a: dict, b: dict) -> bool:
    """Whether two setups describe one run: equal up to where the files lie (a job array may see
    the same sets and weights under other mount points; digests tell whether they are the same)."""
    return _without_paths(a) == _without_paths(b)


def _without_paths(value):
    if isinstance(value, dict):
        return {k: _without_paths(v) for k, v in value.items() if k not in ("path", "source")}
    if isinstance(value, list):
        return [_without_paths(v) for v in value]
    return value


def finished_shard(folder: str | Path, index: int, shards: int, setup: dict) -> Path | None:
    """The shard file `folder` already holds for this run (`same_run`), or None: a rerun skips it."""
    path = Path(folder) / shard_name(index, shards)
    done = shard_setup(path) if path.exists() else None
    return path if done is not None and same_run(done, setup) else None


def shard_setup(path: str | Path) -> dict | None:
    """The setup recorded in a shard file, or None when it is not a readable evaluate shard."""
    from vidtool.tensorfile import read_header_file

    try:
        header, _ = read_header_file(path)
        return json.loads(header["__metadata__"]["vidtool.evaluate"])
    except (UserError, KeyError, TypeError, json.JSONDecodeError):
        return None


def load_shard(path: Path) -> tuple[Rows, dict, int, int]:
    from vidtool.tensorfile import load

    tf = load(path, kinds=["dataset-shard"])
    if "evaluate" not in tf.extra or "shard" not in tf.extra:
        raise UserError(f"{path}: a dataset-shard file, but not one written by `vidtool evaluate --shard`")
    index, shards = (int(x) for x in tf.extra["shard"].split("/"))
    keys = json.loads(tf.extra["items"])
    rows = Rows()
    for role in ROLES:
        names = [k[len(role) + 1 : -len("#len")] for k in tf.tensors if k.startswith(role + "/") and k.endswith("#len")]
        parts = {}
        for name in names:
            lengths = tf.tensors[f"{role}/{name}#len"].tolist()
            flat = tf.tensors[f"{role}/{name}"].numpy() if f"{role}/{name}" in tf.tensors else np.zeros(0)
            bounds = np.cumsum([0] + lengths)
            parts[name] = [flat[a:b] if b > a else None for a, b in zip(bounds[:-1], bounds[1:])]
        for i, key in enumerate(keys[role]):
            rows.add(role, key, {name: col[i] for name, col in parts.items() if col[i] is not None})
    return rows, json.loads(tf.extra["evaluate"]), index, shards


def merge_shards(paths: list[str]) -> tuple[Rows, dict]:
    """Rows of all shards of one run, in order, after checking they are complete and agree."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(p.glob("evaluate-shard-*-of-*.safetensors"))
            if not found:
                raise UserError(f"{p} holds no evaluate-shard-*.safetensors files; run `vidtool evaluate --shard I/N -o {p}` first")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise UserError(f"no such shard file or folder: {p}")
    loaded = {}
    setup, total = None, None
    for path in files:
        rows, file_setup, index, shards = load_shard(path)
        if setup is None:
            setup, total = file_setup, shards
        elif not same_run(file_setup, setup) or shards != total:
            raise UserError(f"{path} belongs to a different evaluate run (other sets, metrics, options or weights); "
                            "merge only the shards of one run")
        if index in loaded:
            raise UserError(f"shard {index}/{shards} appears twice ({loaded[index][1]} and {path})")
        loaded[index] = (rows, path)
    missing = sorted(set(range(total)) - set(loaded))
    if missing:
        raise UserError(f"missing shard(s) {', '.join(map(str, missing))} of {total}; rerun those jobs, then merge")
    merged = Rows()
    for index in range(total):
        merged.extend(loaded[index][0])
    return merged, setup
