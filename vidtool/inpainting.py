"""Sketch-guided video inpainting end to end (MotionAura §4): pixels → tokens → the LoRA-adapted
spectral transformer fills the region's tokens → pixels, composited into the input.

Only the region is new: the tokens outside it are kept as they are given (never sampled), and
after decoding the pixels outside the user's mask are the input's own bytes, so the context is
exactly preserved and the tokenizer's reconstruction error shows only inside the hole.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from vidtool.errors import UserError


@dataclass
class InpaintResult:
    frames: np.ndarray  # uint8 [T, H, W, 3]: the input outside the mask, the decoded tokens inside
    decoded: np.ndarray  # uint8 [T, H, W, 3]: the decoded tokens everywhere (the tokenizer's view)


@dataclass
class InpaintRequest:
    frames: np.ndarray  # uint8 [T, H, W, 3]
    mask: np.ndarray  # bool [T, H, W], True where to paint
    strokes: np.ndarray  # [h, w] nonzero on the sketch's strokes
    prompt: str


def read_mask(path: Path, frames: int, size: tuple[int, int]) -> np.ndarray:
    """A mask file → bool [frames, H, W]: an .npz with 'mask' [T, H, W], a 'mask' tensor file, or one
    image (nonzero = paint) used for every frame. Resized (nearest) to the video's frame size."""
    import torch.nn.functional as F

    suffix = path.suffix.lower()
    if not path.is_file():
        raise UserError(f"no such mask file: {path}")
    if suffix == ".npz":
        from vidtool.data.tokens import read_masks

        with np.load(path) as data:
            native = data["mask"].shape[1:] if "mask" in data else size
        masks = read_masks(path, frames, tuple(native))
    elif suffix == ".safetensors":
        from vidtool import tensorfile

        masks = tensorfile.load(path, kinds=["mask"]).main[0].numpy() > 0
    else:
        from PIL import Image

        try:
            image = np.asarray(Image.open(path).convert("L")) > 127
        except OSError as e:
            raise UserError(f"cannot read the mask image {path}: {e}") from e
        masks = np.repeat(image[None], frames, axis=0)
    if len(masks) < frames:
        masks = np.concatenate([masks, np.repeat(masks[-1:], frames - len(masks), axis=0)])
    masks = torch.from_numpy(np.ascontiguousarray(masks[:frames])).float()[:, None]
    masks = F.interpolate(masks, size=size, mode="nearest")[:, 0] > 0.5
    if not masks.any():
        raise UserError(f"the mask {path} is empty: mark the region to paint with nonzero pixels")
    return masks.numpy()


def inpaint(model, tokenizer, request: InpaintRequest, text_encoder, *, steps: int | None = None,
            cfg: float | None = None, temperature: float | None = None, seed: int = 0, device: str = "cpu",
            progress: Callable[[int], None] | None = None) -> InpaintResult:
    """Fill `request.mask` of `request.frames`; the result's frames equal the input outside the mask."""
    from vidtool.autoencoders.apply import check_frame_size, decode_frames, encode_frames, fit_length
    from vidtool.autoencoders.tiling import default_tiling
    from vidtool.data.tokens import sketch_image, token_region

    frames, mask = request.frames, request.mask
    if frames.shape[:3] != mask.shape:
        raise UserError(f"the mask is {mask.shape} (T, H, W) and the video {frames.shape[:3]}; they must match")
    check_frame_size(frames[None], tokenizer.spatial_factor, tokenizer.family)
    padded, length = fit_length(frames[None], tokenizer.temporal_factor, tokenizer.family)
    padded_mask, _ = fit_length(mask[None], tokenizer.temporal_factor, tokenizer.family)
    holed = np.where(padded_mask[..., None], 0, padded).astype(np.uint8)  # V ⊙ (1 − m)
    tiling = default_tiling(tokenizer)
    with torch.inference_mode():
        tokens = encode_frames(tokenizer, padded, tiling, device).tokens.to(device)
        masked_tokens = encode_frames(tokenizer, holed, tiling, device).tokens.to(device)
        region = token_region(torch.from_numpy(padded_mask), tokenizer.temporal_factor, tokenizer.spatial_factor)
        sketch = torch.from_numpy(sketch_image(request.strokes)).float()[None, None].to(device)
        text, null = text_encoder.encode([request.prompt]), text_encoder.encode([""])
        filled = model.inpaint(tokens, masked_tokens, region.to(device), sketch, text.tokens.to(device),
                               text.mask.to(device), null.tokens[0].to(device), null.mask[0].to(device), steps=steps,
                               cfg=cfg, temperature=temperature,
                               generator=[torch.Generator().manual_seed(seed)], progress=progress)
        latents = tokenizer.indices_to_latents(filled)
        decoded = np.concatenate(list(decode_frames(tokenizer, latents, tiling, device)), axis=1)[0, :length]
    return InpaintResult(frames=np.where(mask[..., None], decoded, frames).astype(np.uint8), decoded=decoded)
