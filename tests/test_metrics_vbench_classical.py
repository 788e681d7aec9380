"""VBench-style classical dimensions: the flicker formula, the dynamic-degree rule, Farneback motion."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from vidtool.metrics import vbench_classical as vb


def texture(size: int = 64, seed: int = 0) -> np.ndarray:
    noise = gaussian_filter(np.random.default_rng(seed).random((size, size, 3)), sigma=(3, 3, 0))
    noise = (noise - noise.min()) / (noise.max() - noise.min())
    return (noise * 255).round().astype(np.uint8)


def sliding(step: int, frames: int = 16) -> np.ndarray:
    """A periodic texture moving `step` pixels right per frame (np.roll keeps it seamless)."""
    base = texture()
    return np.stack([np.roll(base, step * t, axis=1) for t in range(frames)])


def test_flicker_follows_vbench_formula():
    frames = np.zeros((5, 8, 8, 3), np.uint8)
    frames[1::2] = 51  # every consecutive pair differs by 51 everywhere
    np.testing.assert_array_equal(vb.frame_differences(frames), [51.0] * 4)
    assert vb.flicker_score(vb.frame_differences(frames).mean()) == pytest.approx((255 - 51) / 255)
    assert vb.flicker_score(vb.frame_differences(np.zeros((3, 8, 8, 3), np.uint8)).mean()) == 1.0


def test_farneback_flow_recovers_a_known_shift():
    frames = sliding(3, frames=2)
    flow = vb._flow(frames[0], frames[1])[16:-16, 16:-16]
    assert np.median(flow[..., 0]) == pytest.approx(3.0, abs=0.3)
    assert np.median(np.abs(flow[..., 1])) < 0.3


def test_dynamic_degree_threshold_and_count_rules():
    # 64-px frames: threshold 6·64/256 = 1.5 pixels; 16 frames need round(4·16/16) = 4 pairs above it
    assert vb.is_dynamic(np.array([2.0, 2.0, 2.0, 2.0] + [0.0] * 11), 16, 64, 64)
    assert not vb.is_dynamic(np.array([2.0, 2.0, 2.0] + [0.0] * 12), 16, 64, 64)
    assert not vb.is_dynamic(np.array([1.5] * 15), 16, 64, 64)  # strictly above the threshold counts
    assert vb.sampled_count(16, fps=24) == 6  # every round(24/8) = 3rd frame


def test_dynamic_degree_tells_a_moving_texture_from_a_still_one():
    still = np.repeat(texture()[None], 16, axis=0)
    assert vb.flow_peaks(still, 8).max() < 0.05
    moving = sliding(4)
    peaks = vb.flow_peaks(moving, 8)
    assert vb.is_dynamic(peaks, 16, 64, 64) and not vb.is_dynamic(vb.flow_peaks(still, 8), 16, 64, 64)


def test_motion_smoothness_is_one_for_a_still_video_and_high_for_steady_motion():
    still = np.repeat(texture()[None], 9, axis=0)
    assert vb.motion_smoothness(still) == pytest.approx(1.0, abs=1e-5)  # Farneback sees ~0 flow, not exactly 0
    steady = vb.motion_smoothness(sliding(2, frames=9))
    rng = np.random.default_rng(3)
    jumpy = vb.motion_smoothness(np.stack([np.roll(texture(), int(s), axis=1) for s in rng.integers(0, 64, 9)]))
    assert steady > 0.98 and jumpy < steady
    assert vb.motion_smoothness(still[:2]) is None
