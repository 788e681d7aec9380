"""Inception Score, and the video IS of StyleGAN-V (`isv2048_ucf`, src/metrics/video_inception_score.py).

    IS = exp( E_x KL( p(y|x) || p(y) ) ),   p(y) = E_x p(y|x)

(Salimans et al. 2016.) StyleGAN-V applies it to videos with C3D fine-tuned on UCF-101 (Saito et
al. 2020, TGANv2), as the TorchScript file `c3d_ucf101.pt`: called as `c3d(video)` with no keyword
arguments on the first 16 frames, float [B, 3, 16, H, W] in 0..255, it returns class probabilities
[B, 101] and resizes and normalises internally. 2048 videos, shuffled with
`np.random.RandomState(42)`, split into 10 parts; the score is the mean over the parts, with their
standard deviation beside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import xlogy

from vidtool.errors import UserError
from vidtool.metrics.video_detectors import ClipProtocol

C3D_CALL: dict = {}
C3D_CLIP = ClipProtocol(frames=16)
DEFAULT_VIDEOS = 2048
DEFAULT_SPLITS = 10
SHUFFLE_SEED = 42


@dataclass(frozen=True)
class InceptionScore:
    mean: float
    std: float
    splits: int


def inception_score(probs, splits: int = 1) -> InceptionScore:
    """IS of class probabilities [N, K] (rows sum to 1), over `splits` parts after StyleGAN-V's shuffle."""
    p = np.array(probs, dtype=np.float64)
    if p.ndim != 2 or len(p) < splits or splits < 1:
        raise UserError(f"the inception score over {splits} split(s) needs at least {splits} videos, got {len(p)}")
    np.random.RandomState(SHUFFLE_SEED).shuffle(p)
    scores = []
    for i in range(splits):
        part = p[i * len(p) // splits : (i + 1) * len(p) // splits]
        marginal = part.mean(axis=0, keepdims=True)
        # xlogy: 0·log 0 = 0, so a confident (one-hot) prediction is a finite KL, not NaN
        kl = (xlogy(part, part) - xlogy(part, marginal)).sum(axis=1).mean()
        scores.append(np.exp(kl))
    return InceptionScore(float(np.mean(scores)), float(np.std(scores)), splits)
