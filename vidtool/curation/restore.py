"""Repairing clips before training (`vidtool restore`): MotionAura App. C.3's preprocessing of WebVid.

MotionAura masks the watermarks of every frame, fills the masks by inpainting, then runs a video
super-resolution model (StableVSR) over the result. Here each step is optional and takes a local model:

- remove text: the mask is the text detector's (the classical one of `vidtool.curation.scores`, which
  finds lines that stay put over frames spread through the clip, one mask for the whole clip; or an
  OWL-ViT/OWLv2 folder, `vidtool.curation.text_detect`, boxes found in every frame), grown by `dilate`
  pixels so the letters' outlines and anti-aliasing go too, and filled frame by frame with OpenCV's
  Telea inpainting or a diffusers Stable Diffusion inpainting pipeline. Pixels outside the mask are
  the input's.
- upscale: super-resolution with a transformers Swin2SR folder, frame by frame (an image model:
  unlike StableVSR it does not look at neighbouring frames).

A restored clip keeps its frame count and frame rate.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vidtool.errors import UserError

TELEA_RADIUS = 3  # pixels around each masked pixel the Telea method draws from (OpenCV's example value)
MASK_FRAMES = 8  # frames spread over the clip the classical detector compares
CHUNK_FRAMES = 32  # frames read, restored and written at a time
UPSCALE_BATCH = 4


@dataclass(frozen=True)
class RestoreOptions:
    remove_text: bool = False
    dilate: int = 4  # pixels the text mask grows by, at the clip's own resolution
    size: int = 256  # short side the classical detector looks at (as `vidtool score --size`)
    crf: int = 18


def classical_mask(frames: np.ndarray, size: int) -> np.ndarray:
    """bool [H,W]: the classical detector's text lines over MASK_FRAMES frames spread over the clip."""
    import cv2

    from vidtool.curation.scores import grey, resize_short, text_mask

    picks = np.unique(np.round(np.linspace(0, len(frames) - 1, MASK_FRAMES)).astype(np.int64))
    small = text_mask([grey(resize_short(frames[i], size)) for i in picks]).astype(np.uint8)
    height, width = frames.shape[1:3]
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_NEAREST).astype(bool)


def grow(masks: np.ndarray, pixels: int) -> np.ndarray:
    import cv2

    if pixels == 0:
        return masks
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * pixels + 1, 2 * pixels + 1))
    return np.stack([cv2.dilate(m.astype(np.uint8), kernel).astype(bool) for m in masks])


class TeleaInpainter:
    name = "opencv-telea"

    def __call__(self, frame: np.ndarray, mask: np.ndarray) -> np.ndarray:
        import cv2

        return cv2.inpaint(frame, mask.astype(np.uint8), TELEA_RADIUS, cv2.INPAINT_TELEA)


class DiffusionInpainter:
    """A diffusers StableDiffusionInpaintPipeline folder, run on each frame with an empty prompt and
    the same seed; its output is kept only inside the mask."""

    def __init__(self, folder: str | Path, *, steps: int = 20, seed: int = 0, device: str = "cpu"):
        from vidtool.metrics.clipsim import folder_digest
        from vidtool.standard_folders import describe, first_line, is_pipeline_root, load_errors, pipeline_index, quiet_diffusers

        path = Path(folder)
        kind = pipeline_index(path).get("_class_name") if is_pipeline_root(path) else None
        if kind != "StableDiffusionInpaintPipeline":
            raise UserError(f"--inpaint-model {path} is {describe(path) if path.is_dir() else 'not a folder'}; it needs a "
                            "diffusers StableDiffusionInpaintPipeline folder (model_index.json beside unet/, vae/, ...)")
        for part in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
            if not (path / part).is_dir():
                raise UserError(f"--inpaint-model {path} has no {part}/ folder; pass the whole diffusers "
                                "StableDiffusionInpaintPipeline folder as save_pretrained wrote it")
        from diffusers import StableDiffusionInpaintPipeline

        quiet_diffusers()
        try:
            self.pipe = StableDiffusionInpaintPipeline.from_pretrained(
                str(path), safety_checker=None, requires_safety_checker=False, local_files_only=True).to(device)
        except load_errors() as error:
            raise UserError(f"cannot load the inpainting pipeline {path}: {first_line(error)}") from error
        self.pipe.set_progress_bar_config(disable=True)
        self.steps, self.seed, self.device = steps, seed, device
        # The U-Net halves the latent once per down block after the first; the VAE divides by its scale factor.
        self.multiple = self.pipe.vae_scale_factor * 2 ** (len(self.pipe.unet.config.block_out_channels) - 1)
        self.name = f"StableDiffusionInpaintPipeline:{folder_digest(path / 'unet')}"

    def __call__(self, frame: np.ndarray, mask: np.ndarray) -> np.ndarray:
        import cv2
        import torch
        from PIL import Image

        height, width = frame.shape[:2]
        work_h, work_w = (-(-side // self.multiple) * self.multiple for side in (height, width))
        image = Image.fromarray(cv2.resize(frame, (work_w, work_h), interpolation=cv2.INTER_LINEAR))
        hole = Image.fromarray(cv2.resize(mask.astype(np.uint8) * 255, (work_w, work_h), interpolation=cv2.INTER_NEAREST))
        painted = self.pipe(prompt="", image=image, mask_image=hole, height=work_h, width=work_w,
                            num_inference_steps=self.steps, guidance_scale=1.0, output_type="np",
                            generator=torch.Generator(self.device).manual_seed(self.seed)).images[0]
        painted = cv2.resize(np.clip(painted * 255 + 0.5, 0, 255).astype(np.uint8), (width, height),
                             interpolation=cv2.INTER_AREA)
        return np.where(mask[..., None], painted, frame)


class Upscaler:
    """Super-resolution by a transformers Swin2SR folder (`Swin2SRForImageSuperResolution` and its
    image processor), by the factor the model was trained for."""

    def __init__(self, folder: str | Path, *, scale: int | None = None, device: str = "cpu"):
        from transformers import AutoImageProcessor, Swin2SRForImageSuperResolution
        from transformers.utils import logging as hf_logging

        from vidtool.metrics.clipsim import folder_digest
        from vidtool.standard_folders import check_all_weights_read, config_json, describe, first_line, load_errors

        path = Path(folder)
        if not path.is_dir() or not isinstance(doc := config_json(path), dict) or doc.get("model_type") != "swin2sr":
            raise UserError(f"--upscale-model {path} is {describe(path) if path.is_dir() else 'not a folder'}; it needs "
                            "a transformers Swin2SR super-resolution folder (model_type swin2sr)")
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        try:
            self.model, info = Swin2SRForImageSuperResolution.from_pretrained(str(path), local_files_only=True,
                                                                              output_loading_info=True)
            self.model.eval().to(device)
            self.processor = AutoImageProcessor.from_pretrained(str(path), local_files_only=True)
        except load_errors() as error:
            raise UserError(f"cannot load Swin2SR from {path}: {first_line(error)}") from error
        check_all_weights_read(path, info, "Swin2SRForImageSuperResolution")
        self.scale = int(self.model.config.upscale)
        if self.scale < 2:
            raise UserError(f"--upscale-model {path} does not enlarge (its upscale is {self.scale}): it is a restoration "
                            "model, not super-resolution")
        if scale is not None and scale != self.scale:
            raise UserError(f"--scale {scale}, but {path} upscales by {self.scale}; pass --scale {self.scale} or a "
                            f"Swin2SR trained for x{scale}")
        self.device, self.digest = device, f"swin2sr:{folder_digest(path)}"

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        import torch

        height, width = frames.shape[1:3]
        out = []
        for start in range(0, len(frames), UPSCALE_BATCH):
            pixels = self.processor(images=list(frames[start : start + UPSCALE_BATCH]), return_tensors="pt")["pixel_values"]
            with torch.no_grad():
                big = self.model(pixel_values=pixels.to(self.device)).reconstruction
            # The processor pads the bottom and right to its size divisor; the enlarged frame is the top left.
            big = big[:, :, : height * self.scale, : width * self.scale].clamp(0, 1)
            out.append((big * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy())
        return np.concatenate(out)


def restore_clip(source: str | os.PathLike, dest: Path, options: RestoreOptions, *, fps: float | None = None,
                 detector=None, inpainter=None, upscaler=None) -> dict:
    """Write `source` restored to `dest` (.mp4, atomically); returns the columns its record gains:
    frames, fps, height, width, and what was applied (`text_removed`, `upscaled`). The clip is read,
    restored and written CHUNK_FRAMES frames at a time, so its length does not bound memory."""
    from vidtool.video import probe_video, read_frames, write_mp4s

    source = Path(source)
    info = probe_video(source, fps=fps)
    columns, seen, sizes = {}, {"mask": 0.0, "frames": 0}, []
    if options.remove_text:
        inpainter = inpainter or TeleaInpainter()
        clip_mask = None
        if detector is None:  # one mask for the whole clip, from frames spread over it
            spread = np.unique(np.round(np.linspace(0, info.frames - 1, MASK_FRAMES)).astype(np.int64))
            clip_mask = classical_mask(read_frames(source, lambda count: spread, fps=fps).frames, options.size)

    # A GIF has no index to seek by (each read decodes it from the start), so it is read once; it is
    # also the one input that is small by nature.
    whole = read_frames(source, np.arange, fps=fps).frames if source.suffix.lower() == ".gif" else None

    def chunks():
        for start in range(0, info.frames, CHUNK_FRAMES):
            if whole is not None:
                frames = whole[start : start + CHUNK_FRAMES]
            else:
                frames = read_frames(source, lambda count: np.arange(start, min(start + CHUNK_FRAMES, count)), fps=fps).frames
            if options.remove_text:
                masks = (np.broadcast_to(clip_mask, frames.shape[:3]) if detector is None else detector.masks(frames))
                masks = grow(masks, options.dilate)
                frames = np.stack([inpainter(frame, mask) if mask.any() else frame for frame, mask in zip(frames, masks)])
                seen["mask"] += float(masks.sum()) / masks[0].size
            if upscaler is not None:
                frames = upscaler(frames)
            seen["frames"] += len(frames)
            sizes.append(frames.shape[1:3])
            yield frames

    write_mp4s([(dest, chunks())], info.fps, crf=options.crf)
    if options.remove_text:
        columns["text_removed"] = {"detector": detector.digest if detector else "classical", "inpainter": inpainter.name,
                                   "mask_area": round(seen["mask"] / max(seen["frames"], 1), 4)}
    if upscaler is not None:
        columns["upscaled"] = {"model": upscaler.digest, "scale": upscaler.scale}
    height, width = sizes[0]
    # H.264 in yuv420p needs even sides: write_video repeats the last row or column of an odd one.
    return {"frames": seen["frames"], "fps": info.fps, "height": height + height % 2, "width": width + width % 2,
            **columns}
