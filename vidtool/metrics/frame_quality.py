"""PSNR and SSIM between two clips, frame by frame.

Inputs are uint8 [T, H, W, 3] (divided by 255) or float [T, H, W, 3] already in [0, 1]; numpy
arrays or CPU tensors. Both metrics use data range 1, as the common video-metrics code does, so the
numbers compare with the PSNR/SSIM columns papers report. A clip's score is the mean of its frames'
scores (`video_scores`); a dataset's is the mean of its clips' scores, which is the caller's to take.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

# Identical frames have infinite PSNR; the common metrics code reports 100 dB for MSE 0, which keeps
# means over frames and clips finite (vidtool.video.psnr uses the same cap).
PSNR_IDENTICAL = 100.0

# Wang, Bovik, Sheikh & Simoncelli 2004, "Image quality assessment: from error visibility to
# structural similarity", §III-C: 11x11 circular-symmetric Gaussian window, sigma 1.5, K1 0.01, K2 0.03.
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _unit_frames(a, b) -> tuple[np.ndarray, np.ndarray]:
    """Both clips as float64 [T, H, W, C] in [0, 1], checked to match."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"frame metrics need clips of equal shape, got {a.shape} and {b.shape}")
    if a.ndim != 4:
        raise ValueError(f"expected frames [T, H, W, C], got shape {a.shape}; index one video out of a batch")
    return _to_unit(a), _to_unit(b)


def _to_unit(x: np.ndarray) -> np.ndarray:
    if x.dtype == np.uint8:
        return x.astype(np.float64) / 255.0
    if np.issubdtype(x.dtype, np.floating):
        if x.size and (x.min() < 0 or x.max() > 1):
            raise ValueError(f"float frames must lie in [0, 1], got [{x.min():g}, {x.max():g}]; "
                             "map model output [-1, 1] with vidtool.video.frames_from_model first")
        return x.astype(np.float64)
    raise ValueError(f"frames must be uint8 or float in [0, 1], got {x.dtype}")


def psnr_frames(a, b) -> np.ndarray:
    """PSNR in dB of each frame pair, data range 1: 10·log10(1 / MSE); 100 where MSE is 0. -> [T]"""
    a, b = _unit_frames(a, b)
    mse = ((a - b) ** 2).mean(axis=(1, 2, 3))
    with np.errstate(divide="ignore"):
        scores = 10.0 * np.log10(1.0 / mse)
    return np.where(mse == 0, PSNR_IDENTICAL, scores)


def _gaussian_window() -> torch.Tensor:
    x = torch.arange(SSIM_WINDOW, dtype=torch.float64) - (SSIM_WINDOW - 1) / 2
    g = torch.exp(-(x**2) / (2 * SSIM_SIGMA**2))
    return g / g.sum()


def _blur_valid(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Gaussian-weighted local mean of [N, 1, H, W] over the window positions that fit inside the
    frame ('valid' correlation, no padding): [N, 1, H-10, W-10]. Separable: rows, then columns."""
    x = F.conv2d(x, g.view(1, 1, -1, 1))
    return F.conv2d(x, g.view(1, 1, 1, -1))


def ssim_frames(a, b) -> np.ndarray:
    """Mean SSIM of each frame pair (Wang et al. 2004, Eq. 13 with the Gaussian window). -> [T]

    Computed per channel over the valid region (the centres where the whole 11x11 window lies
    inside the frame, so borders are never padded), averaged over those pixels, then over channels.
    Frames must be at least 11 pixels on each side.
    """
    a, b = _unit_frames(a, b)
    frames, h, w, channels = a.shape
    if min(h, w) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs frames of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, got {h}x{w}")
    x = rearrange(torch.from_numpy(a), "t h w c -> (t c) 1 h w")
    y = rearrange(torch.from_numpy(b), "t h w c -> (t c) 1 h w")
    g = _gaussian_window()
    mu_x, mu_y = _blur_valid(x, g), _blur_valid(y, g)
    # Population (not sample) moments under the window weights, as in the paper.
    var_x = _blur_valid(x * x, g) - mu_x**2
    var_y = _blur_valid(y * y, g) - mu_y**2
    cov = _blur_valid(x * y, g) - mu_x * mu_y
    c1, c2 = SSIM_K1**2, SSIM_K2**2  # (K·L)^2 with data range L = 1
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    per_channel = rearrange(ssim_map.mean(dim=(1, 2, 3)), "(t c) -> t c", t=frames, c=channels)
    return per_channel.mean(dim=1).numpy()


def video_scores(a, b) -> dict[str, float]:
    """{"psnr": mean over frames in dB, "ssim": mean over frames} for one clip pair [T, H, W, 3]."""
    return {"psnr": float(psnr_frames(a, b).mean()), "ssim": float(ssim_frames(a, b).mean())}
