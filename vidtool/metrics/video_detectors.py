"""Video networks used as fixed feature extractors (I3D for FVD, C3D for the video Inception Score).

Both come as TorchScript files from a local path the user names, the files StyleGAN-V distributes
(Skorokhodov et al. 2022, src/metrics/metric_utils.py). They are handed clips the way StyleGAN-V's
`temporal_detector` path hands them: [B, C, T, H, W] with values in the uint8 range 0..255, here
as float32 so the same tensor also reaches a CUDA module unchanged. Whatever resizing and rescaling
a network needs happens inside the TorchScript module (I3D: `rescale=True, resize=True`).

A clip is the first `frames` frames of a video taken every `subsample`-th frame, as StyleGAN-V's
generated-set path does (`load_n_consecutive_random_offset = False`); a fixed start is also what
makes per-video features cacheable and a sharded run equal to an unsharded one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from einops import rearrange

from vidtool.errors import UserError
from vidtool.metrics.feature_cache import FeatureCache
from vidtool.metrics.video_sets import file_digest


@dataclass(frozen=True)
class ClipProtocol:
    frames: int = 16
    subsample: int = 1

    @property
    def span(self) -> int:
        """Frames a video needs: the clip runs from frame 0 to frame (frames - 1)·subsample."""
        return (self.frames - 1) * self.subsample + 1

    @property
    def name(self) -> str:
        return f"{self.frames}f" if self.subsample == 1 else f"{self.frames}f-every{self.subsample}"

    def select(self, frames: np.ndarray, key: str) -> np.ndarray:
        if len(frames) < self.span:
            raise UserError(f"{key} has {len(frames)} frames; the {self.name} protocol needs at least {self.span} "
                            "(StyleGAN-V discards shorter videos; drop it from the set or generate longer clips)")
        return frames[: self.span : self.subsample]


class TorchScriptDetector:
    """A TorchScript network file called as `module(video, **call_kwargs)` on [B, 3, T, H, W] 0..255."""

    def __init__(self, path: str, *, name: str, call_kwargs: dict, device: str):
        import torch

        path_ = Path(path)
        if not path_.is_file():
            raise UserError(f"{name} weights not found: {path_}; pass the TorchScript file StyleGAN-V uses")
        try:
            self.module = torch.jit.load(str(path_), map_location=device).eval()
        except (RuntimeError, ValueError) as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise UserError(f"{path_}: not a TorchScript file ({first})") from error
        self.name, self.call_kwargs, self.device = name, call_kwargs, device
        self.path, self.digest = str(path_), file_digest(path_)

    def __call__(self, clips: list[np.ndarray]) -> np.ndarray:
        """uint8 clips [T, H, W, 3] of one shape -> float64 outputs [B, D]."""
        import torch

        video = torch.from_numpy(np.stack(clips)).to(self.device)
        video = rearrange(video, "b t h w c -> b c t h w").float()
        with torch.no_grad():
            out = self.module(video, **self.call_kwargs)
        if out.ndim != 2 or out.shape[0] != len(clips):
            raise UserError(f"{self.path} returned shape {list(out.shape)} for {len(clips)} clips; "
                            f"expected [B, D] ({self.name} interface: see vidtool.metrics.video_detectors)")
        return out.double().cpu().numpy()


def clip_outputs(detector: TorchScriptDetector, protocol: ClipProtocol, videos: list[tuple[str, str, np.ndarray]],
                 cache: FeatureCache | None) -> list[np.ndarray]:
    """Detector output of each (key, digest, frames) video's protocol clip, through the cache.

    Clips of one shape go through the network together; a set may mix resolutions because the
    networks resize internally.
    """
    results: list[np.ndarray | None] = [cache.get(digest) if cache else None for _, digest, _ in videos]
    todo: dict[tuple, list[int]] = {}
    clips = {}
    for i, (key, _, frames) in enumerate(videos):
        if results[i] is None:
            clips[i] = protocol.select(frames, key)
            todo.setdefault(clips[i].shape, []).append(i)
    for indices in todo.values():
        outputs = detector([clips[i] for i in indices])
        for i, out in zip(indices, outputs):
            results[i] = out
            if cache:
                cache.put(videos[i][1], out)
    return results
