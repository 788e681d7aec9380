"""A folder of footage with known defects for the curation tests (`vidtool cut-scenes`, `score`, `filter`).

Every clip is a 128x128 window panning 2 px a frame over a photograph that ships with scikit-image,
so its motion, detail and brightness are those of camera footage; each defect is added on purpose:

- long.mp4: four shots of four photographs joined by hard cuts at frames CUTS;
- good.mp4: one more clean shot;
- static.mp4: one frame held still;
- blurred.mp4: a pan through a Gaussian blur of sigma 3 px;
- text.mp4: a pan with two lines of outlined caption text burned in;
- dup_a.mp4 / dup_b.mp4: the same pan, the second re-graded (+4 levels) with sensor noise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

FPS = 24
SIZE = 128
SHOT_FRAMES = (20, 25, 18, 22)
CUTS = tuple(int(c) for c in np.cumsum(SHOT_FRAMES)[:-1])  # the first frame of each new shot: 20, 45, 63
# Detailed photographs (the long clip's four shots, then the others' sources), so a clean pan is sharp.
PHOTOS = ("astronaut", "coffee", "camera", "immunohistochemistry", "grass", "chelsea", "coins", "gravel", "brick")


def photo(name: str, short: int = 2 * SIZE) -> np.ndarray:
    import cv2
    import skimage.data

    image = getattr(skimage.data, name)()
    image = np.stack([image] * 3, -1) if image.ndim == 2 else image[..., :3]
    h, w = image.shape[:2]
    scale = short / min(h, w)
    return cv2.resize(np.ascontiguousarray(image), (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)


def pan(name: str, frames: int, step: int = 2) -> np.ndarray:
    """A SIZE x SIZE window sliding right by `step` px and down by half that a frame, near the photo's centre."""
    image = photo(name)
    top, left = (image.shape[0] - SIZE) // 2 - 12, (image.shape[1] - SIZE) // 2 - 24
    return np.stack([image[top + t * step // 2 : top + t * step // 2 + SIZE, left + t * step : left + t * step + SIZE]
                     for t in range(frames)])


def caption(frames: np.ndarray) -> np.ndarray:
    import cv2

    frames = frames.copy()
    for frame in frames:
        for y in (30, 110):  # white letters with a black outline, as subtitles are drawn
            cv2.putText(frame, "SALE 50% OFF", (6, y), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(frame, "SALE 50% OFF", (6, y), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return frames


def build(folder: Path) -> dict[str, Path]:
    """Write the clips into `folder`; returns {name: path}."""
    import cv2

    from vidtool.video import write_video

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    duplicate = pan(PHOTOS[8], 24)
    regraded = np.clip(duplicate.astype(np.int16) + 4 + rng.integers(-3, 4, duplicate.shape), 0, 255).astype(np.uint8)
    clips = {
        "long": np.concatenate([pan(name, n) for name, n in zip(PHOTOS[:4], SHOT_FRAMES)]),
        "good": pan(PHOTOS[4], 24),
        "static": np.repeat(pan(PHOTOS[5], 1), 24, axis=0),
        "blurred": np.stack([cv2.GaussianBlur(f, (0, 0), 3) for f in pan(PHOTOS[6], 24)]),
        "text": caption(pan(PHOTOS[7], 24)),
        "dup_a": duplicate,
        "dup_b": regraded,
    }
    paths = {}
    for name, frames in clips.items():
        paths[name] = folder / f"{name}.mp4"
        write_video(paths[name], frames, FPS)
    return paths
