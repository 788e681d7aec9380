"""`checkpoint.digest` (the `family@digest` tag every tensor file records) hashes a weights file once
per version of it, not once per call: `encode` tags every clip it writes, and the sha256 of
movq-tiny's 12 MB took a third of a 16-frame 64² encode (benchmarks/codec_throughput.py)."""

from __future__ import annotations

import hashlib
import os
import shutil

from vidtool import checkpoint
from vidtool.model_store import bundled


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def test_the_digest_is_hashed_once_per_version_of_the_weights_file(tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(bundled("cm-vae-tiny"), folder)
    weights = checkpoint.weights_file(folder)
    first = checkpoint.digest(folder)
    assert first == sha(weights)
    misses = checkpoint._file_digest.cache_info().misses
    assert checkpoint.digest(folder) == first and checkpoint.model_tag(folder) == f"cm-vae@{first}"
    assert checkpoint._file_digest.cache_info().misses == misses  # not read again

    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    replaced = tmp_path / "new.safetensors"
    replaced.write_bytes(bytes(data))
    os.replace(replaced, weights)  # as vidtool's atomic writes do: a new inode
    assert checkpoint.digest(folder) == sha(weights) != first

    data[-1] ^= 1
    stat = weights.stat()
    weights.write_bytes(bytes(data))  # rewritten in place: same inode and size, a later mtime
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert checkpoint.digest(folder) == first
