"""Fréchet Video Distance by the StyleGAN-V protocol (Skorokhodov et al. 2022, §4.1 and
src/metrics/frechet_video_distance.py), which reproduces Unterthiner et al. 2018 up to resizing.

The network is I3D trained on Kinetics-400, as the TorchScript file `i3d_torchscript.pt` that
StyleGAN-V distributes; it is loaded from a local path (`--i3d PATH`), never downloaded. The
interface this module relies on, which any stand-in must keep:

    features = i3d(video, rescale=True, resize=True, return_features=True)

    video     float32 [B, 3, T, H, W], RGB, values 0..255 (the uint8 range; any H, W)
    rescale   the module maps 0..255 to the [-1, 1] input range of I3D
    resize    the module resizes frames to 224x224 itself
    return_features   the 400 logits before the softmax ("raw features"), float [B, 400]

Protocol (StyleGAN-V's metric names): `fvd2048_16f` takes the first 16 consecutive frames of every
video; `fvd2048_128f` the first 128; `fvd2048_128f_subsample8f` 16 frames, every 8th, spanning
the first 121. At most 2048 videos per set (the first ones in the set's order); videos shorter than
the clip are refused rather than silently dropped. Statistics are float64 with the biased
covariance, and the distance is `vidtool.metrics.frechet.frechet_distance` (eigenvalue form).
FVD depends strongly on the number of videos, so the counts are reported beside every value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vidtool.errors import UserError
from vidtool.metrics.frechet import frechet_distance_of_features
from vidtool.metrics.video_detectors import ClipProtocol

I3D_CALL = {"rescale": True, "resize": True, "return_features": True}
VARIANTS = {
    "16f": ClipProtocol(frames=16),
    "128f": ClipProtocol(frames=128),
    "128f_subsample8f": ClipProtocol(frames=16, subsample=8),
}
DEFAULT_VIDEOS = 2048
MIN_VIDEOS = 2  # one video has no covariance; the distance would be meaningless


@dataclass(frozen=True)
class FVDConfig:
    variant: str = "16f"
    max_videos: int = DEFAULT_VIDEOS

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise UserError(f"unknown FVD variant {self.variant!r}; choose one of {', '.join(VARIANTS)}")
        if self.max_videos < MIN_VIDEOS:
            raise UserError(f"--fvd-videos must be at least {MIN_VIDEOS}, got {self.max_videos}")

    @property
    def clip(self) -> ClipProtocol:
        return VARIANTS[self.variant]

    @property
    def protocol(self) -> str:
        return f"StyleGAN-V fvd{self.max_videos}_{self.variant} (I3D TorchScript, {self.clip.frames} frames " \
               f"every {self.clip.subsample} from frame 0, float64 stats, biased covariance)"


def check_fvd_counts(generated: int, reference: int) -> None:
    """Refuse sets too small for a covariance before any feature is extracted."""
    for role, count in (("generated", generated), ("reference", reference)):
        if count < MIN_VIDEOS:
            raise UserError(f"FVD needs at least {MIN_VIDEOS} videos in each set; the {role} set has {count}")


def fvd(generated: np.ndarray, reference: np.ndarray) -> float:
    """FVD between per-video I3D features [N, D] and [M, D]."""
    check_fvd_counts(len(generated), len(reference))
    return frechet_distance_of_features(generated, reference)
