"""Fréchet distance between two Gaussians fitted to feature sets (the FID/FVD statistic).

    d² = |μ1 − μ2|² + tr(Σ1) + tr(Σ2) − 2·tr((Σ1 Σ2)^½)

(Dowson & Landau 1982; Heusel et al. 2017 for FID; Unterthiner et al. 2018 for FVD.) Statistics are
taken in float64 with the biased covariance (divide by N), as StyleGAN-V's `metric_utils.FeatureStats`
does. The trace of the matrix square root is computed without `scipy.linalg.sqrtm`: Σ1 Σ2 is similar
to the symmetric positive semi-definite Σ1^½ Σ2 Σ1^½, so its eigenvalues are real and ≥ 0 and
tr((Σ1 Σ2)^½) = Σ sqrt(λ_i). Both square roots come from `eigh` of symmetric matrices, which stays
accurate where an iterative sqrtm returns complex noise for near-singular covariances.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GaussianStats:
    mean: np.ndarray  # float64 [D]
    cov: np.ndarray  # float64 [D, D], biased (divided by count)
    count: int


def gaussian_stats(features) -> GaussianStats:
    """Mean and biased covariance of features [N, D], in float64."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) < 1:
        raise ValueError(f"features must be [N, D] with N >= 1, got shape {x.shape}")
    mean = x.mean(axis=0)
    centred = x - mean
    return GaussianStats(mean=mean, cov=centred.T @ centred / len(x), count=len(x))


def _symmetric_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric PSD matrix; eigenvalues below 0 are rounding error and become 0."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(a: GaussianStats, b: GaussianStats) -> float:
    """Squared Fréchet distance d² between N(a.mean, a.cov) and N(b.mean, b.cov); ≥ 0."""
    if a.mean.shape != b.mean.shape:
        raise ValueError(f"feature sizes differ: {a.mean.shape} vs {b.mean.shape}")
    root_a = _symmetric_sqrt(a.cov)
    middle = root_a @ b.cov @ root_a  # similar to a.cov @ b.cov, symmetric PSD
    eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2)
    trace_sqrt = np.sqrt(np.clip(eigenvalues, 0, None)).sum()
    diff = a.mean - b.mean
    distance = diff @ diff + np.trace(a.cov) + np.trace(b.cov) - 2 * trace_sqrt
    # Identical statistics can land a hair below zero through rounding; a distance is never negative.
    return float(max(distance, 0.0))


def frechet_distance_of_features(x, y) -> float:
    return frechet_distance(gaussian_stats(x), gaussian_stats(y))
