"""Incremental latent/token set builds: every encoded batch of clips is kept as it finishes, so a
killed build (SIGTERM, `kill -9`, a lost node) resumes where it stopped instead of encoding again.

Beside the output `DIR/NAME` the builder keeps the folder `DIR/.NAME.partial/`:

    settings.json           the build's settings and their digest (written first)
    batch-000000.safetensors  what batch 0 made (its tensors, captions in the metadata), atomically
    batch-000001.safetensors  ...

Batches are numbered in the order the builder reads them, which the settings fix (manifests, clip
files, model, frames, size, rate, buckets, batch size). A rerun with the same settings takes every
batch it finds and encodes only the rest, so the finished set is the one an uninterrupted build
writes; a folder left by other settings is discarded first, never mixed in. The folder is removed
once the set itself is written.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any, Iterable

import torch

from vidtool.atomic import atomic_write_bytes, atomic_write_text
from vidtool.errors import UserError


def partial_folder(out_file: Path) -> Path:
    out_file = Path(out_file)
    return out_file.with_name(f".{out_file.name}.partial")


def file_fingerprint(path: Path) -> list:
    """What identifies a file or folder's content cheaply: each file's path, size and modification time."""
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    out = []
    for f in files:
        try:
            stat = f.stat()
        except OSError:
            out.append([str(f), None])
            continue
        out.append([str(f.resolve()), stat.st_size, stat.st_mtime_ns])
    return out


def manifests_fingerprint(manifests: Iterable[Path]) -> list:
    """Each manifest's bytes (digested) and the files its records name, so an edited manifest or a
    re-rendered clip does not resume from batches of the old one."""
    from vidtool.data.manifest import PATH_KEYS, read_manifest, resolve

    out = []
    for manifest in manifests:
        manifest = Path(manifest)
        try:
            data = manifest.read_bytes()
        except OSError as e:
            raise UserError(f"cannot read manifest {manifest}: {e.strerror or e}") from e
        files = [file_fingerprint(resolve(manifest, record[key])) for record in read_manifest(manifest)
                 for key in PATH_KEYS if isinstance(record.get(key), str)]
        out.append([str(manifest.resolve()), hashlib.sha256(data).hexdigest(), files])
    return out


class PartialSet:
    """The kept batches of one build (see the module docstring)."""

    def __init__(self, out_file: Path, settings: dict[str, Any], log=None):
        self.folder = partial_folder(out_file)
        # Through JSON once, so it compares equal to the copy read back.
        text = json.dumps(settings, sort_keys=True, default=str)
        self.digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        self.log = log or (lambda message: None)
        stored = self._stored_digest()
        if stored is not None and stored != self.digest:
            self.log(f"discarding {self.folder.name}: it was built with other settings")
            shutil.rmtree(self.folder, ignore_errors=True)
        elif stored is None and self.folder.exists():
            shutil.rmtree(self.folder, ignore_errors=True)
        if not self.folder.is_dir():
            try:
                self.folder.mkdir(parents=True)
            except OSError as e:
                raise UserError(f"cannot write {self.folder}: {e.strerror or e}; choose another output path") from e
            atomic_write_text(self.folder / "settings.json",
                              json.dumps({"digest": self.digest, "settings": json.loads(text)}, indent=1))

    def _stored_digest(self) -> str | None:
        try:
            return json.loads((self.folder / "settings.json").read_text())["digest"]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _path(self, index: int) -> Path:
        return self.folder / f"batch-{index:06d}.safetensors"

    def done(self) -> int:
        """How many batches are kept, counting from batch 0 (a gap ends the run of kept ones)."""
        n = 0
        while self._path(n).is_file():
            n += 1
        return n

    def load(self, index: int) -> tuple[dict[str, torch.Tensor], list[str]] | None:
        """Batch `index`'s tensors and captions, or None when it is missing or unreadable."""
        from safetensors import SafetensorError
        from safetensors.torch import load

        path = self._path(index)
        try:
            data = path.read_bytes()
            tensors = load(data)
            meta = json.loads(data[8: 8 + int.from_bytes(data[:8], "little")])["__metadata__"]
            if meta.get("digest") != self.digest:
                return None
            captions = json.loads(meta["captions"])
        except (OSError, ValueError, KeyError, TypeError, SafetensorError):
            return None
        return tensors, [str(c) for c in captions]

    def save(self, index: int, tensors: dict[str, torch.Tensor], captions: list[str]) -> None:
        from safetensors.torch import save

        data = save({k: v.contiguous() for k, v in tensors.items()},
                    metadata={"digest": self.digest, "captions": json.dumps(captions)})
        atomic_write_bytes(self._path(index), data)

    def finish(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
