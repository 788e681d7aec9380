"""Content-debiased FVD (cd-FVD; Ge et al., "On the Content Bias in Fréchet Video Distance",
CVPR 2024): the Fréchet distance of FVD computed on features of a self-supervised VideoMAE
(VideoMAE-v2) video transformer instead of the Kinetics-400 I3D classifier, which the paper shows
to favour per-frame quality over motion.

The network is read from a local transformers folder (`--videomae DIR`, `model_type: videomae`,
loaded with `local_files_only=True`); nothing is downloaded. The cd-FVD reference model is
VideoMAE-v2 ViT-g/14 fine-tuned on Something-Something-v2 (`vit_g_hybrid_pt_1200e_ssv2_ft.pth`),
which must first be converted to a transformers VideoMAE folder; any VideoMAE checkpoint with
`use_mean_pooling: true` works, and the digest of its files is reported beside the number.

What this module follows, from the reference implementation (github.com/songweige/content-debiased-fvd,
the `cd-fvd` PyPI package: `cdfvd/fvd.py`, `cdfvd/third_party/VideoMAEv2/utils.py` and
`videomaev2_finetune.py`):

- clip: 16 frames (`sequence_length=16`, every frame); here the first `num_frames` frames of every
  video (16 for that checkpoint), fixed rather than a random window, as vidtool's FVD does, so that
  per-video features are cacheable and a sharded run equals an unsharded one;
- preprocessing (`preprocess_videomae`): uint8 → float / 255 (range [0, 1]), then every frame
  resized to 224×224 (`image_size` from the model config here) with bilinear interpolation,
  `align_corners=False`, no antialiasing and no aspect-preserving crop. The reference applies no
  mean/std normalisation after that, so neither does this module (ImageNet mean/std, which the
  VideoMAE fine-tuning data pipeline uses, is NOT applied by cd-FVD);
- features: `forward_features` of the mean-pooling ViT, i.e. `fc_norm(mean over all patch tokens
  of the last encoder layer)` — 1408-d for ViT-g. A `VideoMAEForVideoClassification` folder gives
  exactly that (its `fc_norm`); a bare `VideoMAEModel` folder holds no `fc_norm`, so the feature is
  the mean-pooled encoder output without it, and the report says which pooling was used;
- statistics and distance: float64 mean and biased covariance, the Fréchet distance of
  `vidtool.metrics.frechet` (the reference uses scipy's `sqrtm`; the same quantity). The reference
  defaults to 2048 generated videos and the full real set; here `--fvd-videos` caps both sets.

Not verified here: numbers against the published cd-FVD statistics (no converted ViT-g checkpoint
was at hand); transformers' `fc_norm` LayerNorm uses eps 1e-5 where VideoMAE-v2 uses 1e-6 (a
converted checkpoint keeps the weights, not the eps); the reference's video-folder loader first
resizes the short side with antialiasing and centre-crops to its `resolution` argument before the
224 resize — vidtool hands the frames as the set holds them, like the reference's array path.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from vidtool.errors import UserError
from vidtool.metrics.frechet import frechet_distance_of_features
from vidtool.metrics.fvd import MIN_VIDEOS, check_fvd_counts
from vidtool.metrics.video_detectors import ClipProtocol
from vidtool.metrics.video_sets import file_digest

POOLING_FC_NORM = "fc_norm(mean of patch tokens)"
POOLING_MEAN = "mean of patch tokens (no fc_norm in the checkpoint)"


def preprocess_clips(clips: list[np.ndarray], size: int):
    """uint8 clips [T, H, W, 3] -> float32 [B, T, 3, size, size] in [0, 1], bilinearly resized
    (align_corners=False, no antialias), the layout transformers' VideoMAE takes."""
    import torch
    from einops import rearrange

    video = torch.from_numpy(np.stack(clips)).float() / 255.0  # [B, T, H, W, C]
    b, t = video.shape[:2]
    frames = rearrange(video, "b t h w c -> (b t) c h w")
    frames = torch.nn.functional.interpolate(frames, size=(size, size), mode="bilinear", align_corners=False)
    return rearrange(frames, "(b t) c h w -> b t c h w", b=b, t=t)


def videomae_digest(folder: Path) -> str:
    """One digest over the config and weight files of a model folder (names and bytes)."""
    h = hashlib.sha256()
    files = sorted(p for p in folder.iterdir()
                   if p.name == "config.json" or p.suffix in (".safetensors", ".bin", ".pt", ".pth"))
    for path in files:
        h.update(path.name.encode() + file_digest(path).encode())
    return h.hexdigest()[:16]


class VideoMAEDetector:
    """A local transformers VideoMAE folder called on clips: uint8 [T, H, W, 3] -> float64 [B, D]."""

    name = "VideoMAE"

    def __init__(self, folder: str, device: str = "cpu", dtype: str = "float32"):
        """`dtype`: a torch dtype name, the precision of the weights and pixel input (features come
        out float64 whatever it is; the feature cache keeps each precision apart)."""
        import json

        import torch

        path = Path(folder)
        if not path.is_dir() or not (path / "config.json").is_file():
            raise UserError(f"VideoMAE folder not found or has no config.json: {path}; "
                            "pass a local transformers VideoMAE folder to --videomae")
        config = json.loads((path / "config.json").read_text())
        if config.get("model_type") != "videomae":
            raise UserError(f"{path} holds a {config.get('model_type')!r} model; cd-fvd needs a transformers VideoMAE "
                            "folder (model_type 'videomae')")
        if not config.get("use_mean_pooling", True):
            raise UserError(f"{path}: use_mean_pooling is false; cd-FVD takes the mean-pooled features of a "
                            "mean-pooling VideoMAE (VideoMAE-v2 fine-tuned checkpoints are)")
        classifier = "VideoMAEForVideoClassification" in (config.get("architectures") or [])
        try:
            from transformers import VideoMAEForVideoClassification, VideoMAEModel

            cls = VideoMAEForVideoClassification if classifier else VideoMAEModel
            model, info = cls.from_pretrained(str(path), local_files_only=True, output_loading_info=True)
        except (OSError, ValueError) as error:
            raise UserError(f"cannot load VideoMAE from {path}: {str(error).splitlines()[0]}") from error
        missing = [k for k in info.get("missing_keys", []) if not k.endswith("classifier.weight")
                   and not k.endswith("classifier.bias")]
        if missing:
            raise UserError(f"{path}: the checkpoint lacks {len(missing)} weights (e.g. {sorted(missing)[0]}); "
                            "cd-fvd never runs on randomly initialised weights")
        model = model.eval().to(device, getattr(torch, dtype))
        self.encoder = model.videomae if classifier else model
        self.fc_norm = model.fc_norm if classifier else None
        self.pooling = POOLING_FC_NORM if classifier else POOLING_MEAN
        self.image_size = int(model.config.image_size)
        self.frames = int(model.config.num_frames)
        self.device, self.dtype, self.path, self.digest = device, dtype, str(path), videomae_digest(path)

    @property
    def clip(self) -> ClipProtocol:
        return ClipProtocol(frames=self.frames)

    def __call__(self, clips: list[np.ndarray]) -> np.ndarray:
        import torch

        pixels = preprocess_clips(clips, self.image_size).to(self.device, getattr(torch, self.dtype))
        with torch.no_grad():
            tokens = self.encoder(pixel_values=pixels).last_hidden_state  # [B, N, D]
            features = tokens.mean(dim=1)
            if self.fc_norm is not None:
                features = self.fc_norm(features)
        return features.double().cpu().numpy()


def check_videos(max_videos: int) -> None:
    if max_videos < MIN_VIDEOS:
        raise UserError(f"--fvd-videos must be at least {MIN_VIDEOS}, got {max_videos}")


def protocol(max_videos: int, frames: int, image_size: int, pooling: str) -> str:
    return (f"cd-FVD (Ge et al. 2024): VideoMAE features [{pooling}] of the first {frames} frames, "
            f"/255 to [0, 1], bilinear resize to {image_size}x{image_size}, no mean/std normalisation; "
            f"at most {max_videos} videos per set, float64 stats, biased covariance")


def cd_fvd(generated: np.ndarray, reference: np.ndarray) -> float:
    """cd-FVD between per-video VideoMAE features [N, D] and [M, D]."""
    check_fvd_counts(len(generated), len(reference))
    return frechet_distance_of_features(generated, reference)
