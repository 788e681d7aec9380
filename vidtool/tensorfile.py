"""Tensor files: the contract between stages (DESIGN.md, "Tensor files").

One safetensors file per artifact; every tensor has a leading batch dimension; metadata keys are
`vidtool.*` strings. Files travel on disk or through pipes (`-` or no path = stdin/stdout when that
is not a terminal). Writes are atomic; reads validate size, header, kind, dtype, rank and version
before anything else touches the data, so a truncated or foreign file is one clear error.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from vidtool.atomic import atomic_write_bytes
from vidtool.errors import UserError

if TYPE_CHECKING:
    import torch

FORMAT_VERSION = 1
PREFIX = "vidtool."
# A safetensors header is a small JSON document; anything bigger is not one of ours.
MAX_HEADER_BYTES = 64 << 20

FLOAT = ("F16", "BF16", "F32", "F64")
INT = ("I64", "I32", "I16", "U8")
# The seeds torch's generators take: a signed or unsigned 64-bit integer.
SEED_RANGE = (-(2**63), 2**64 - 1)


@dataclass(frozen=True)
class KindSpec:
    main: str | None  # the tensor every file of this kind must hold
    dtypes: tuple[str, ...] = ()
    ranks: tuple[int, ...] = ()
    last_dim: int | None = None


KINDS: dict[str, KindSpec] = {
    "video": KindSpec("video", ("U8",), (5,), last_dim=3),  # [B, T, H, W, 3]
    "latents": KindSpec("latents", FLOAT, (5,)),  # [B, C, T, h, w]
    "tokens": KindSpec("tokens", INT, (4,)),  # [B, T, h, w]
    "keyframes": KindSpec("latents", FLOAT, (5,)),  # [B, C, T, h, w] keyframe latents
    "motion": KindSpec("motion", FLOAT, (3, 4, 5)),  # LaMD z_m (+ a "content" image tensor)
    "embeddings": KindSpec("embeddings", FLOAT, (3,)),  # [B, L, D]
    "mask": KindSpec("mask", ("U8", "BOOL"), (4,)),  # [B, T, H, W]
    "sketch": KindSpec("sketch", ("U8", "BOOL"), (4,)),  # [B, T, H, W]
    "dataset-shard": KindSpec(None),
}


@dataclass
class TensorFile:
    kind: str
    tensors: dict[str, "torch.Tensor"]
    model: str | None = None  # "family@digest" of the checkpoint that produced it
    fps: float | None = None
    prompt: str | None = None
    seed: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    parents: list[str] = field(default_factory=list)  # digests of the inputs
    extra: dict[str, str] = field(default_factory=dict)  # other `vidtool.*` keys, prefix stripped
    version: int = FORMAT_VERSION
    digest: str | None = None  # of the bytes this file was read from

    def __getitem__(self, name: str) -> "torch.Tensor":
        return self.tensors[name]

    @property
    def main(self) -> "torch.Tensor":
        return self.tensors[KINDS[self.kind].main]

    def size_param(self, key: str) -> int | None:
        """`params[key]` (frames, height, width: what decode trims back to) as a positive int, or None
        when absent; anything else is a file that was edited or not written by vidtool."""
        value = self.params.get(key)
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 1 << 20:
            raise UserError(f"'{PREFIX}params' has {key} = {_shown(value)}; it must be a positive whole number "
                            "(the file was edited or not written by vidtool)")
        return value

    def prompts(self) -> list[str] | None:
        """One prompt per batch item: `vidtool.prompts` (a JSON list, written for batches) if present,
        else `vidtool.prompt` repeated; None when the file records no prompt."""
        # A dataset shard has no main tensor and holds per-set extras (batch 1) beside its N items.
        sizes = [t.shape[0] for t in self.tensors.values()]
        batch = self.main.shape[0] if KINDS[self.kind].main else max(sizes, default=1)
        if "prompts" in self.extra:
            try:
                prompts = json.loads(self.extra["prompts"])
            except (ValueError, RecursionError):
                prompts = None
            if not isinstance(prompts, list) or len(prompts) != batch:
                raise UserError(f"vidtool.prompts holds {len(prompts) if isinstance(prompts, list) else 'no list of'} "
                                f"prompts for a batch of {batch}; the file was edited or not written by vidtool")
            return [str(p) for p in prompts]
        return None if self.prompt is None else [self.prompt] * batch

    def set_prompts(self, prompts: list[str]) -> None:
        """Record one prompt per batch item (`prompt` too when they are all the same)."""
        self.extra["prompts"] = json.dumps(list(prompts))
        self.prompt = prompts[0] if len(set(prompts)) == 1 else None

    def metadata(self) -> dict[str, str]:
        meta = {f"{PREFIX}kind": self.kind, f"{PREFIX}version": str(self.version)}
        for key in ("model", "fps", "prompt", "seed"):
            value = getattr(self, key)
            if value is not None:
                meta[PREFIX + key] = str(value)
        meta[PREFIX + "params"] = json.dumps(self.params, sort_keys=True)
        meta[PREFIX + "parents"] = json.dumps(self.parents)
        meta.update({PREFIX + k: v for k, v in self.extra.items()})
        return meta


def to_bytes(tf: TensorFile) -> bytes:
    """Serialise to the safetensors layout with a sorted header, so equal content gives equal bytes.

    (safetensors' own writer orders metadata by hash, which would make pipe round trips and digests
    differ from run to run.)
    """
    check(tf.kind, {k: (_dtype_code(v), list(v.shape)) for k, v in tf.tensors.items()}, "output")
    header: dict[str, Any] = {"__metadata__": tf.metadata()}
    blobs, offset = [], 0
    for name in sorted(tf.tensors):
        blob = _raw_bytes(tf.tensors[name])
        header[name] = {"dtype": _dtype_code(tf.tensors[name]), "shape": list(tf.tensors[name].shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the format pads the header to 8-byte alignment
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def _raw_bytes(t: "torch.Tensor") -> bytes:
    import torch

    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16; the bits are what we store
        t = t.view(torch.int16)
    return t.numpy().tobytes()


def save(tf: TensorFile, dest: str | os.PathLike | None) -> str:
    """Write `tf` to a path (atomically) or to stdout (`-`/None); returns the digest of the bytes."""
    data = to_bytes(tf)
    if dest is None or str(dest) == "-":
        out = sys.stdout.buffer
        if out.isatty():
            raise UserError("refusing to write a binary tensor file to the terminal; pass -o FILE or pipe into another stage")
        # BufferedWriter.write may return after a partial write (a pipe whose reader left while the
        # writer was blocked) without raising; loop, so the rest raises BrokenPipeError (exit 141)
        # instead of ending with status 0 and half a file in the pipe.
        view = memoryview(data)
        while view:
            view = view[out.write(view) or 0 :]
        out.flush()
    else:
        atomic_write_bytes(dest, data)
    return bytes_digest(data)


def load(src: str | os.PathLike | None, *, kinds: Iterable[str] | None = None) -> TensorFile:
    """Read and validate a tensor file from a path or stdin (`-`/None)."""
    from safetensors.torch import load as load_bytes

    name, data = _read_source(src)
    header = parse_header(data, name)
    meta = header.get("__metadata__") or {}
    kind = _check_metadata(meta, name, kinds)
    check(kind, {k: (v["dtype"], v["shape"]) for k, v in header.items() if k != "__metadata__"}, name)
    try:
        tensors = load_bytes(data)
    except Exception as e:  # safetensors' own errors are several types; all mean a broken file
        raise UserError(f"{name}: not a readable safetensors file ({str(e).splitlines()[0]})") from e
    _check_values(tensors, name)
    fps = _number(meta, "fps", name, float)
    seed = _number(meta, "seed", name, int)
    if fps is not None and not (math.isfinite(fps) and 0 < fps <= 1000):
        raise UserError(f"{name}: '{PREFIX}fps' is {fps:g}; a frame rate must be above 0 and at most 1000")
    if seed is not None and not SEED_RANGE[0] <= seed <= SEED_RANGE[1]:
        raise UserError(f"{name}: '{PREFIX}seed' does not fit in 64 bits")
    return TensorFile(
        kind=kind,
        tensors=tensors,
        model=meta.get(PREFIX + "model"),
        fps=fps,
        prompt=meta.get(PREFIX + "prompt"),
        seed=seed,
        params=_json(meta, "params", {}, name, dict),
        parents=_json(meta, "parents", [], name, list),
        extra={k[len(PREFIX):]: v for k, v in meta.items() if k.startswith(PREFIX) and k[len(PREFIX):] not in _KNOWN},
        version=int(meta[PREFIX + "version"]),
        digest=bytes_digest(data),
    )


_KNOWN = {"kind", "version", "model", "fps", "prompt", "seed", "params", "parents"}


def _number(meta: dict[str, str], key: str, name: str, kind: type) -> Any:
    raw = meta.get(PREFIX + key)
    if raw is None:
        return None
    try:
        if len(raw) > 64:  # int() of a huge digit string is slow, and no rate or seed is that long
            raise ValueError
        return kind(raw)
    except ValueError:
        raise UserError(f"{name}: '{PREFIX}{key}' is {_shown(raw)}, not a number") from None


def _check_values(tensors: dict[str, torch.Tensor], name: str) -> None:
    """Float tensors hold finite numbers: NaN or infinite latents decode to a black or garbage video
    that would look like success."""
    import torch

    for key, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise UserError(f"{name}: tensor '{key[:40]}' holds NaN or infinite values; rerun the stage that wrote it")


def _shown(value: Any, limit: int = 40) -> str:
    """A value from a file, made safe and short for a one-line message."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def bytes_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def parse_header(data: bytes, name: str) -> dict[str, Any]:
    """Check the framing of a safetensors file and return its JSON header.

    Done by hand (no torch) so `vidtool info` stays light and a truncated file is named as such.
    """
    if len(data) < 8:
        raise UserError(f"{name}: truncated or not a tensor file ({len(data)} bytes)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > MAX_HEADER_BYTES or n + 8 > len(data):
        hint = "truncated" if n <= MAX_HEADER_BYTES else "not a safetensors file"
        raise UserError(f"{name}: {hint} (header says {n} bytes, file has {len(data) - 8})")
    try:
        header = json.loads(data[8 : 8 + n])
    except (ValueError, RecursionError) as e:  # bad UTF-8 or JSON, huge integers, absurd nesting
        raise UserError(f"{name}: not a safetensors file (bad header: {e.__class__.__name__})") from e
    if not isinstance(header, dict):
        raise UserError(f"{name}: not a safetensors file (header is not a mapping)")
    _check_entries(header, name)
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    have = len(data) - 8 - n
    if end > have:
        raise UserError(f"{name}: truncated (tensor data ends at byte {end}, file holds {have}); rerun the stage that wrote it")
    return header


def _check_entries(header: dict[str, Any], name: str) -> None:
    """Every entry has the safetensors shape (so later code may index it freely): string metadata, and
    tensors with a dtype string, a list of non-negative int dims and ordered int data offsets."""
    meta = header.get("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise UserError(f"{name}: not a safetensors file (metadata must map strings to strings)")
    is_count = lambda x: isinstance(x, int) and not isinstance(x, bool) and x >= 0
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        ok = (isinstance(entry, dict) and isinstance(entry.get("dtype"), str)
              and isinstance(entry.get("shape"), list) and all(map(is_count, entry["shape"]))
              and isinstance(entry.get("data_offsets"), list) and len(entry["data_offsets"]) == 2
              and all(map(is_count, entry["data_offsets"])) and entry["data_offsets"][0] <= entry["data_offsets"][1])
        if not ok:
            raise UserError(f"{name}: not a safetensors file (bad entry for tensor {key[:40]!r})")


def read_header_file(path: str | os.PathLike) -> tuple[dict[str, Any], str]:
    """Header and digest of a tensor file on disk, without loading tensors into a framework."""
    name, data = _read_source(path)
    return parse_header(data, name), bytes_digest(data)


def check(kind: str, shapes: dict[str, tuple[str, list[int]]], name: str) -> None:
    """Validate tensors (dtype code, shape) against the kind's spec and the leading-batch rule."""
    spec = KINDS[kind]
    if spec.main is not None:
        if spec.main not in shapes:
            raise UserError(f"{name}: a '{kind}' file must hold a tensor named '{spec.main}'; it has {sorted(shapes)}")
        dtype, shape = shapes[spec.main]
        if spec.dtypes and dtype not in spec.dtypes:
            raise UserError(f"{name}: '{spec.main}' has dtype {dtype}; a '{kind}' file needs one of {', '.join(spec.dtypes)}")
        if spec.ranks and len(shape) not in spec.ranks:
            raise UserError(f"{name}: '{spec.main}' has shape {shape}; a '{kind}' file needs rank {' or '.join(map(str, spec.ranks))}")
        if spec.last_dim is not None and shape[-1] != spec.last_dim:
            raise UserError(f"{name}: '{spec.main}' has shape {shape}; its last dimension must be {spec.last_dim} (RGB)")
        if 0 in shape:
            raise UserError(f"{name}: '{spec.main}' has shape {shape}; no axis may be empty")
        if kind == "motion" and "content" in shapes:  # LaMD: the uint8 [B, H, W, 3] image the motion starts from
            dtype, content = shapes["content"]
            if dtype != "U8" or len(content) != 4 or content[-1] != 3 or 0 in content:
                raise UserError(f"{name}: 'content' is {dtype} {content}; a motion file's content image is U8 [B, H, W, 3]")
        batch = {k: s[0] for k, (_, s) in shapes.items() if len(s) > 0}
        if any(len(s) == 0 for _, s in shapes.values()) or len(set(batch.values())) > 1:
            raise UserError(f"{name}: every tensor needs the same leading batch dimension; got {batch}")


def _check_metadata(meta: dict[str, str], name: str, kinds: Iterable[str] | None) -> str:
    kind = meta.get(PREFIX + "kind")
    if kind is None:
        raise UserError(f"{name}: a safetensors file but not a vidtool tensor file (no '{PREFIX}kind' metadata)")
    if kind not in KINDS:
        raise UserError(f"{name}: unknown kind {kind!r}; known kinds: {', '.join(KINDS)}")
    version = meta.get(PREFIX + "version", "")
    if not (version.isascii() and version.isdigit()):
        raise UserError(f"{name}: bad '{PREFIX}version' {version!r}")
    if int(version) > FORMAT_VERSION:
        raise UserError(f"{name}: format version {version} is newer than this vidtool ({FORMAT_VERSION}); upgrade vidtool")
    if kinds is not None:
        kinds = list(kinds)
        if kind not in kinds:
            raise UserError(f"{name}: this stage takes {' or '.join(kinds)}, not '{kind}'")
    return kind


def _json(meta: dict[str, str], key: str, default: Any, name: str, kind: type = object) -> Any:
    raw = meta.get(PREFIX + key)
    if raw is None:
        return default
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise UserError(f"{name}: '{PREFIX}{key}' is not valid JSON") from e
    if not isinstance(value, kind):
        raise UserError(f"{name}: '{PREFIX}{key}' must be a JSON {kind.__name__}")
    return value


def _read_source(src: str | os.PathLike | None) -> tuple[str, bytes]:
    if src is None or str(src) == "-":
        if sys.stdin.isatty():
            raise UserError("no input: give a FILE or pipe a tensor file into this stage")
        data = sys.stdin.buffer.read()
        if not data:
            raise UserError("<stdin>: empty input; the stage before this one in the pipe wrote nothing (did it fail?)")
        return "<stdin>", data
    path = Path(src)
    if not path.exists():
        raise UserError(f"no such file: {path}")
    if path.is_dir():
        raise UserError(f"{path} is a folder; expected a tensor file (.safetensors)")
    return str(path), path.read_bytes()


def _dtype_code(t: "torch.Tensor") -> str:
    import torch

    codes = {torch.float16: "F16", torch.bfloat16: "BF16", torch.float32: "F32", torch.float64: "F64",
             torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.uint8: "U8", torch.bool: "BOOL",
             torch.int8: "I8"}
    return codes.get(t.dtype, str(t.dtype))
