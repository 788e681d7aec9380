"""Closed forms the metrics must reproduce: Fréchet distance, SSIM/PSNR limits, IS, codebook stats."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vidtool.metrics.codebook import code_counts, codebook_stats
from vidtool.metrics.frame_quality import SSIM_K1, psnr_frames, ssim_frames
from vidtool.metrics.frechet import GaussianStats, frechet_distance, frechet_distance_of_features, gaussian_stats
from vidtool.metrics.video_inception_score import inception_score


def gaussian(mean, cov) -> GaussianStats:
    return GaussianStats(np.asarray(mean, dtype=np.float64), np.atleast_2d(np.asarray(cov, dtype=np.float64)), 0)


def test_frechet_distance_of_identical_gaussians_is_zero():
    a = np.random.default_rng(0).standard_normal((6, 6))
    stats = gaussian(np.arange(6.0), a @ a.T + 0.1 * np.eye(6))
    assert frechet_distance(stats, stats) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize(("a", "b", "expected"), [
    # 1-D: (0 - 1)² + 1 + 4 - 2·sqrt(1·4) = 2
    (gaussian([0.0], [[1.0]]), gaussian([1.0], [[4.0]]), 2.0),
    # isotropic: |(1, 2)|² + 2 + 8 - 2·tr(2I) = 5 + 10 - 8 = 7
    (gaussian([0.0, 0.0], np.eye(2)), gaussian([1.0, 2.0], 4 * np.eye(2)), 7.0),
    # diagonal: 3 + (1+4+9) + (4+4+1) - 2·(sqrt(4) + sqrt(16) + sqrt(9)) = 3 + 14 + 9 - 18 = 8
    (gaussian([0.0, 0.0, 0.0], np.diag([1.0, 4.0, 9.0])), gaussian([1.0, 1.0, 1.0], np.diag([4.0, 4.0, 1.0])), 8.0),
    # correlated vs identity: eigenvalues of [[2,1],[1,2]] are 3 and 1, so 4 + 2 - 2·(sqrt(3) + 1) = 4 - 2·sqrt(3)
    (gaussian([0.0, 0.0], [[2.0, 1.0], [1.0, 2.0]]), gaussian([0.0, 0.0], np.eye(2)), 4 - 2 * math.sqrt(3)),
])
def test_frechet_distance_closed_forms(a, b, expected):
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_frechet_distance_is_symmetric_and_scales_with_the_square():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((64, 5)) @ rng.standard_normal((5, 5))
    y = rng.standard_normal((48, 5)) * [1, 2, 3, 0.5, 1] + 0.7
    d = frechet_distance_of_features(x, y)
    assert d > 0
    assert frechet_distance_of_features(y, x) == pytest.approx(d, rel=1e-9)
    assert frechet_distance_of_features(3 * x, 3 * y) == pytest.approx(9 * d, rel=1e-9)


def test_gaussian_stats_use_the_biased_covariance():
    stats = gaussian_stats([[0.0], [2.0]])  # mean 1; Σ (x - 1)² / N = 1 (the unbiased estimate would be 2)
    assert stats.mean.tolist() == [1.0] and stats.cov.tolist() == [[1.0]] and stats.cov.dtype == np.float64


def test_ssim_of_all_zeros_against_all_ones_is_c1_over_one_plus_c1():
    # no variance anywhere: SSIM = (2·0·1 + C1)(0 + C2) / ((0 + 1 + C1)(0 + 0 + C2)) = C1 / (1 + C1)
    zeros, ones = np.zeros((1, 16, 16, 3)), np.ones((1, 16, 16, 3))
    expected = SSIM_K1**2 / (1 + SSIM_K1**2)
    assert ssim_frames(zeros, ones)[0] == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(9.999e-05, rel=1e-4)


def test_psnr_of_a_constant_error_of_a_tenth_is_20_db():
    a = np.full((2, 8, 8, 3), 0.2)
    np.testing.assert_allclose(psnr_frames(a, a + 0.1), [20.0, 20.0], rtol=0, atol=1e-9)


@pytest.mark.parametrize("classes", [1, 2, 7, 101])
def test_inception_score_of_distinct_confident_predictions_is_their_count(classes):
    # p(y) is uniform over the K classes and every KL is log K, so IS = K
    assert inception_score(np.eye(classes)).mean == pytest.approx(classes, rel=1e-12)


def test_inception_score_of_identical_predictions_is_one():
    probs = np.tile([0.2, 0.5, 0.3], (40, 1))
    score = inception_score(probs, splits=10)
    assert score.mean == pytest.approx(1.0, abs=1e-12) and score.std == pytest.approx(0.0, abs=1e-12)


def test_inception_score_refuses_fewer_videos_than_splits():
    from vidtool.errors import UserError

    with pytest.raises(UserError, match="at least 10 videos"):
        inception_score(np.eye(4), splits=10)


def test_codebook_uniform_use_of_k_codes_has_perplexity_k():
    tokens = np.arange(64).reshape(4, 4, 4) % 8  # codes 0..7 equally often, of a 32-code book
    stats = codebook_stats(code_counts(tokens, 32))
    assert stats.utilisation == 8 / 32 and stats.perplexity == pytest.approx(8.0, rel=1e-12)
    one = codebook_stats(code_counts(np.zeros((2, 3, 3), int), 32))
    assert one.utilisation == 1 / 32 and one.perplexity == pytest.approx(1.0)


def test_codebook_refuses_ids_outside_the_codebook():
    from vidtool.errors import UserError

    with pytest.raises(UserError, match="outside a codebook of 16"):
        code_counts(np.array([[3, 16]]), 16)
