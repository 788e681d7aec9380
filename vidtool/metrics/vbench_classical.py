"""VBench-style quality dimensions computed with classical tools (Huang et al. 2024, "VBench").

- temporal flickering: exactly VBench's formula — the mean absolute difference between consecutive
  frames (0..255, over pixels and channels), averaged over a video's frame pairs and then over
  videos; score = (255 − mean) / 255, higher is steadier. (VBench applies it to videos of static
  prompts; here it is applied to whatever the set holds.)
- dynamic degree: VBench's rule with OpenCV Farneback optical flow in place of RAFT. Frames are
  taken at about 8 fps (every round(fps/8)-th frame); for each consecutive pair the score is the
  mean of the largest 5% of flow magnitudes; a video is dynamic when at least round(4·n/16) of its
  n frames' scores exceed 6·min(H, W)/256. The set's value is the fraction of dynamic videos.
- motion smoothness: VBench's rule with a Farneback-flow midpoint in place of the AMT
  interpolation network. The even frames are kept, each odd frame is predicted from its two even
  neighbours, and score = (255 − mean |predicted − real|) / 255.

Because a classical flow is not RAFT and a flow warp is not AMT, dynamic degree and motion
smoothness here are NOT comparable with numbers published by VBench; compare them only with each
other. Temporal flickering uses no network and matches VBench's definition.
"""

from __future__ import annotations

import numpy as np

CLASSICAL_NOTE = "classical (OpenCV Farneback flow instead of RAFT/AMT): not comparable with VBench numbers"
FLICKER_NOTE = "VBench temporal-flickering formula (255 - mean |frame[t+1] - frame[t]|) / 255"

# Farneback parameters from OpenCV's dense optical-flow tutorial: a 3-level pyramid halving each
# level, 15-pixel averaging window, 3 iterations, polynomial neighbourhood 5 with sigma 1.2.
FARNEBACK = dict(pyr_scale=0.5, levels=3, winsize=15, iterations=3, poly_n=5, poly_sigma=1.2, flags=0)
TOP_FRACTION = 0.05  # VBench DynamicDegree.get_score: the top 5% of flow magnitudes
SAMPLE_FPS = 8  # VBench DynamicDegree.get_frames: interval = round(fps / 8)


def frame_differences(frames: np.ndarray) -> np.ndarray:
    """Mean absolute difference (0..255) between each frame and the next -> [T - 1]."""
    x = frames.astype(np.float32)
    return np.abs(x[1:] - x[:-1]).mean(axis=(1, 2, 3)).astype(np.float64)


def flicker_score(mean_difference: float) -> float:
    return (255.0 - mean_difference) / 255.0


def _gray(frame: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)


def _flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dense flow [H, W, 2] (dx, dy) with a(y, x) ≈ b(y + dy, x + dx)."""
    import cv2

    return cv2.calcOpticalFlowFarneback(_gray(a), _gray(b), None, **FARNEBACK)


def flow_peaks(frames: np.ndarray, fps: float | None) -> np.ndarray:
    """Dynamic degree's per-pair score: mean of the top 5% flow magnitudes, at ~8 fps -> [n - 1]."""
    interval = max(1, round((fps or SAMPLE_FPS) / SAMPLE_FPS))
    sampled = frames[::interval]
    peaks = []
    for a, b in zip(sampled[:-1], sampled[1:]):
        magnitude = np.linalg.norm(_flow(a, b), axis=-1).ravel()
        cut = int(magnitude.size * TOP_FRACTION)
        peaks.append(float(np.sort(magnitude)[::-1][:cut].mean()) if cut else 0.0)
    return np.asarray(peaks, dtype=np.float64)


def is_dynamic(peaks: np.ndarray, sampled_frames: int, height: int, width: int) -> bool:
    """VBench DynamicDegree.check_move with its set_params thresholds (a clip with no frame pair
    never moves there, even when round(4n/16) is 0)."""
    threshold = 6.0 * min(height, width) / 256.0
    needed = round(4 * sampled_frames / 16.0)
    return len(peaks) > 0 and int((peaks > threshold).sum()) >= needed


def sampled_count(frames: int, fps: float | None) -> int:
    interval = max(1, round((fps or SAMPLE_FPS) / SAMPLE_FPS))
    return len(range(0, frames, interval))


def midpoint(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The frame halfway between a and b: each pixel averaged from a at p − f/2 and b at p + f/2,
    with f the a→b flow at p (a classical stand-in for a learned interpolator)."""
    import cv2

    flow = _flow(a, b)
    h, w = flow.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    half = flow / 2
    from_a = cv2.remap(a, xs - half[..., 0], ys - half[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    from_b = cv2.remap(b, xs + half[..., 0], ys + half[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return (from_a.astype(np.float32) + from_b.astype(np.float32)) / 2


def motion_smoothness(frames: np.ndarray) -> float | None:
    """(255 − mean |midpoint(frame[2k], frame[2k+2]) − frame[2k+1]|) / 255; None under 3 frames."""
    if len(frames) < 3:
        return None
    errors = [np.abs(midpoint(frames[k - 1], frames[k + 1]) - frames[k].astype(np.float32)).mean()
              for k in range(1, len(frames) - 1, 2)]
    return (255.0 - float(np.mean(errors))) / 255.0
