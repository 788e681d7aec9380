"""Describe a tensor file or a model folder as a plain dict (for `vidtool info` and scripts).

Reads only safetensors headers and config.json: no tensors are loaded and torch is not imported.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vidtool import tensorfile
from vidtool.checkpoint import CONFIG_NAME, WEIGHTS_NAME, read_config
from vidtool.errors import UserError


def describe(path: str) -> dict[str, Any]:
    if path != "-" and Path(path).is_dir():
        return _describe_model(Path(path))
    if path == "-":
        name, data = tensorfile._read_source(None)
        header, digest = tensorfile.parse_header(data, name), tensorfile.bytes_digest(data)
    else:
        header, digest = tensorfile.read_header_file(path)
    meta = header.get("__metadata__") or {}
    kind = meta.get(tensorfile.PREFIX + "kind")
    if kind is None:
        raise UserError(f"{path}: a safetensors file but not a vidtool tensor file (no 'vidtool.kind' metadata)")
    metadata: dict[str, Any] = {}
    for key, value in sorted(meta.items()):
        short = key.removeprefix(tensorfile.PREFIX)
        metadata[short] = _json_or_text(value) if short in ("params", "parents") else value
    return {
        "path": path,
        "what": "tensor file",
        "kind": kind,
        "digest": digest,
        "tensors": _tensors(header),
        "metadata": metadata,
    }


def _json_or_text(value: str):
    """params/parents as the JSON they should be; a value that is not (edited, or absurdly nested)
    is shown as the text it is, since `info` describes files, broken ones included."""
    try:
        return json.loads(value)
    except (ValueError, RecursionError):
        return value


def _describe_model(folder: Path) -> dict[str, Any]:
    doc = read_config(folder)
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        raise UserError(f"{folder} has {CONFIG_NAME} but no {WEIGHTS_NAME}")
    header, _ = tensorfile.read_header_file(weights)
    tensors = _tensors(header)
    count = 0
    for t in tensors.values():
        n = 1
        for d in t["shape"]:
            n *= d
        count += n
    from vidtool.checkpoint import digest

    metadata = {"family": doc["family"], "parameters": f"{count:,}", "digest": digest(folder),
                "config": doc["config"], **{k: v for k, v in doc.get("extra", {}).items()}}
    return {"path": str(folder), "what": "model folder", "family": doc["family"], "tensors": tensors,
            "metadata": metadata}


def _tensors(header: dict[str, Any]) -> dict[str, Any]:
    return {k: {"dtype": v["dtype"], "shape": v["shape"]} for k, v in header.items() if k != "__metadata__"}
