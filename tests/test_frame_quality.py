"""PSNR and SSIM per frame: closed forms, the reference implementation, and the properties they promise."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from skimage.metrics import structural_similarity

from vidtool.metrics.frame_quality import psnr_frames, ssim_frames, video_scores


def smooth_clip(seed: int, frames: int = 3, h: int = 40, w: int = 48) -> np.ndarray:
    """float [T, H, W, 3] in [0, 1]: blurred noise, so SSIM's local statistics are not all trivial."""
    rng = np.random.default_rng(seed)
    x = gaussian_filter(rng.random((frames, h, w, 3)), sigma=(0, 2, 2, 0))
    return (x - x.min()) / (x.max() - x.min())


def noisy(clip: np.ndarray, scale: float, seed: int) -> np.ndarray:
    return np.clip(clip + scale * np.random.default_rng(seed).standard_normal(clip.shape), 0, 1)


def test_psnr_of_a_constant_offset_is_ten_log10_of_one_over_its_square():
    a = np.random.default_rng(0).integers(0, 200, size=(2, 16, 16, 3), dtype=np.uint8)
    b = a + np.uint8(10)
    expected = 10 * math.log10(1 / (10 / 255) ** 2)
    np.testing.assert_allclose(psnr_frames(a, b), [expected, expected], rtol=0, atol=1e-9)


def test_psnr_is_per_frame():
    a = np.zeros((2, 8, 8, 3), dtype=np.uint8)
    b = a.copy()
    b[1] = 51  # 51/255 = 0.2 everywhere in frame 1 only
    np.testing.assert_allclose(psnr_frames(a, b), [100.0, 10 * math.log10(1 / 0.2**2)], atol=1e-9)


def test_identical_frames_score_psnr_100_and_ssim_1():
    clip = (smooth_clip(1) * 255).round().astype(np.uint8)
    assert np.array_equal(psnr_frames(clip, clip), np.full(len(clip), 100.0))
    np.testing.assert_allclose(ssim_frames(clip, clip), 1.0, rtol=0, atol=1e-12)


def test_uint8_and_float_inputs_give_the_same_scores():
    clip = (smooth_clip(2) * 255).round().astype(np.uint8)
    other = (noisy(smooth_clip(2), 0.05, 3) * 255).round().astype(np.uint8)
    np.testing.assert_allclose(psnr_frames(clip, other), psnr_frames(clip / 255.0, other / 255.0), atol=1e-12)
    np.testing.assert_allclose(ssim_frames(clip, other), ssim_frames(clip / 255.0, other / 255.0), atol=1e-12)


def test_ssim_of_two_flat_frames_follows_the_luminance_term():
    # Flat frames have zero variance and covariance, so SSIM reduces to (2·mx·my + C1) / (mx² + my² + C1).
    a, b = np.full((1, 16, 16, 3), 0.25), np.full((1, 16, 16, 3), 0.75)
    c1 = 0.01**2
    expected = (2 * 0.25 * 0.75 + c1) / (0.25**2 + 0.75**2 + c1)
    np.testing.assert_allclose(ssim_frames(a, b), [expected], rtol=0, atol=1e-12)


def test_ssim_matches_scikit_image_with_the_paper_settings():
    # skimage filters the whole frame (reflecting at the borders) and then crops (win_size - 1) // 2
    # = 5 pixels from each side before taking the mean. With sigma 1.5 its Gaussian is truncated at
    # radius int(3.5·1.5 + 0.5) = 5, an 11-tap window: the pixels it keeps are exactly the centres of
    # our 'valid' correlation, where the window never reaches the reflected border, so the two agree.
    a, b = smooth_clip(4), noisy(smooth_clip(4), 0.1, 5)
    ours = ssim_frames(a, b)
    reference = [
        structural_similarity(x, y, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                              data_range=1.0, channel_axis=-1)
        for x, y in zip(a, b)
    ]
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-4)


def test_ssim_is_symmetric():
    a, b = smooth_clip(6), noisy(smooth_clip(6), 0.1, 7)
    np.testing.assert_allclose(ssim_frames(a, b), ssim_frames(b, a), rtol=0, atol=1e-12)


def test_a_noisier_copy_scores_lower():
    clean = smooth_clip(8)
    slightly, very = noisy(clean, 0.02, 9), noisy(clean, 0.2, 9)
    assert np.all(ssim_frames(clean, very) < ssim_frames(clean, slightly))
    assert np.all(psnr_frames(clean, very) < psnr_frames(clean, slightly))


def test_video_scores_are_means_over_frames():
    a, b = smooth_clip(10), noisy(smooth_clip(10), 0.05, 11)
    scores = video_scores(a, b)
    assert scores["psnr"] == pytest.approx(psnr_frames(a, b).mean())
    assert scores["ssim"] == pytest.approx(ssim_frames(a, b).mean())


def test_mismatched_or_out_of_range_inputs_are_refused():
    with pytest.raises(ValueError, match="equal shape"):
        psnr_frames(np.zeros((1, 16, 16, 3)), np.zeros((2, 16, 16, 3)))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ssim_frames(np.full((1, 16, 16, 3), -1.0), np.zeros((1, 16, 16, 3)))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim_frames(np.zeros((1, 8, 8, 3)), np.zeros((1, 8, 8, 3)))
