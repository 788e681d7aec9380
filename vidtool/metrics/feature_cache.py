"""Per-video detector features on disk, keyed by the video's digest and the extraction protocol.

Layout: `ROOT/PROTOCOL/DIGEST.safetensors`, one tensor `features` each, where PROTOCOL names the
network, the digest of its weights file and the clip rule (e.g. `i3d-3f1c…-16f`). A rerun, a
different reference set, or a shard that failed half way reuses every video already done; a new
weights file or clip rule lands in a fresh folder, so stale features are never mixed in.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vidtool.atomic import atomic_path


class FeatureCache:
    def __init__(self, root: str | Path, protocol: str):
        self.folder = Path(root) / protocol
        self.protocol = protocol

    def _path(self, digest: str) -> Path:
        # '#' (batch index in a tensor file) is legal in file names but awkward in shells
        return self.folder / f"{digest.replace('#', '.')}.safetensors"

    def get(self, digest: str) -> np.ndarray | None:
        from safetensors.numpy import load_file

        path = self._path(digest)
        if not path.exists():
            return None
        return load_file(str(path))["features"]

    def put(self, digest: str, features: np.ndarray) -> None:
        from safetensors.numpy import save_file

        with atomic_path(self._path(digest)) as tmp:
            save_file({"features": np.ascontiguousarray(features)}, str(tmp),
                      metadata={"vidtool.protocol": self.protocol, "vidtool.video": digest})
