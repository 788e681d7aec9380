"""ControlNet on chosen frames of HARIVO and FusionFrames' keyframe model (HARIVO §1, §4.3:
off-the-shelf ControlNets of the frozen text-to-image base work with no retraining).

The frozen base U-Net sees a video as a batch of images [(B F), C, h, w]; a diffusers
`ControlNetModel` made for that U-Net (same block widths, levels and cross-attention width) is run
on the latents of the frames that have a control image, at every denoising step, with the same
timestep and text tokens (frame-wise tokens included) as the U-Net. Its down and mid residuals,
times --control-scale, are added to those frames' skip connections through the U-Net's
`down_block_additional_residuals` / `mid_block_additional_residual`; every other frame gets zeros,
and the temporal layers carry the guidance on to them. Both halves of classifier-free guidance get
the residuals, as in diffusers' StableDiffusionControlNetPipeline (guess_mode off). An SDXL
ControlNet (addition_embed_type "text_time") also gets the rows' pooled text embeddings and size
conditions (`text_embeds`, `time_ids`), as StableDiffusionXLControlNetPipeline gives it the U-Net's.

Control images are read as RGB in [0, 1] (diffusers' control-image preprocessing, no
normalisation), resized to cover the frame and centre-cropped to latent size × the ControlNet's
conditioning-embedding factor (8 for Stable Diffusion's). diffusers' ControlNet takes no text mask,
so it attends to every text token, as it does in the Stable Diffusion pipelines.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vidtool.errors import UserError

# U-Net settings the residuals' shapes (and the ControlNet's reading of the latents) depend on.
# The addition_* keys: an SDXL ControlNet embeds the pooled text and size conditions as its U-Net does.
MATCHING = ("in_channels", "block_out_channels", "layers_per_block", "down_block_types", "mid_block_type",
            "cross_attention_dim", "transformer_layers_per_block", "addition_embed_type", "addition_time_embed_dim",
            "projection_class_embeddings_input_dim")


class FrameControl(nn.Module):
    """A ControlNet and its control images for some frames of every clip, at one scale."""

    def __init__(self, controlnet: nn.Module, images: dict[int, np.ndarray], scale: float):
        super().__init__()
        self.controlnet = controlnet.requires_grad_(False)
        self.images = images  # frame index (negative: from the end) -> uint8 [H, W, 3]
        self.scale = scale
        self.factor = 2 ** (len(controlnet.config.conditioning_embedding_out_channels) - 1)
        self._conditioning: dict[tuple, torch.Tensor] = {}

    def frames_of(self, frames: int) -> list[int]:
        """The controlled frames of a clip of `frames`, as indices 0..frames-1 in --control-image order."""
        picked = [f % frames for f in self.images if -frames <= f < frames]
        if len(picked) < len(self.images):
            bad = next(f for f in self.images if not -frames <= f < frames)
            raise UserError(f"--control-image {bad}=...: the video has {frames} frames (0 to {frames - 1}, or -1 for "
                            "the last); pass a frame in that range")
        if len(set(picked)) < len(picked):
            raise UserError(f"--control-image names frame {max(picked, key=picked.count)} twice (counting from the "
                            "end too); give each frame one image")
        return picked

    def conditioning(self, frames: int, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
        """The control images of a clip's controlled frames as [K, 3, h * factor, w * factor] in [0, 1]."""
        key = (frames, h, w, like.device, like.dtype)
        if key not in self._conditioning:
            from vidtool.video import cover_and_crop

            size = (h * self.factor, w * self.factor)
            images = [cover_and_crop(self.images[f][None], size)[0] for f in self.images]
            pixels = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255
            self._conditioning = {key: pixels.to(like.device, like.dtype)}
        return self._conditioning[key]

    def residuals(self, x: torch.Tensor, timesteps: torch.Tensor, text: torch.Tensor, frames: int,
                  added_cond_kwargs: dict | None = None) -> dict:
        """The U-Net's extra keyword arguments for a batch x [(B F), C, h, w] of clips of `frames`
        frames: the ControlNet's residuals on the controlled frames, zeros on the others.
        `added_cond_kwargs`: an SDXL base's per-row "text_embeds" and "time_ids", which its
        ControlNet reads as the U-Net does (StableDiffusionXLControlNetPipeline passes them both)."""
        picked = self.frames_of(frames)
        clips = x.shape[0] // frames
        rows = torch.tensor([c * frames + f for c in range(clips) for f in picked], device=x.device)
        condition = self.conditioning(frames, x.shape[2], x.shape[3], x).repeat(clips, 1, 1, 1)
        t = timesteps.expand(x.shape[0]) if timesteps.dim() == 0 else timesteps
        added = {k: v[rows] for k, v in (added_cond_kwargs or {}).items()} or None
        out = self.controlnet(x[rows], t[rows], encoder_hidden_states=text[rows], controlnet_cond=condition,
                              conditioning_scale=self.scale, added_cond_kwargs=added, return_dict=False)
        down, mid = out

        def spread(residual: torch.Tensor) -> torch.Tensor:
            full = residual.new_zeros((x.shape[0], *residual.shape[1:]))
            return full.index_copy(0, rows, residual)

        return {"down_block_additional_residuals": tuple(spread(r) for r in down),
                "mid_block_additional_residual": spread(mid)}


def load(folder: str | Path, images: list[tuple[int, str]], scale: float, unet: nn.Module,
         dtype: torch.dtype) -> FrameControl:
    """The ControlNetModel in `folder` (a diffusers ControlNetModel folder, or a pipeline root with
    `controlnet/`), checked against the frozen base `unet`, with the control images read."""
    from diffusers import ControlNetModel

    from vidtool.standard_folders import component, describe, diffusers_class, quiet_diffusers

    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"--controlnet {folder}: no such folder")
    part = component(folder, "controlnet", "--controlnet")
    if diffusers_class(part) != "ControlNetModel":
        raise UserError(f"--controlnet {folder} is {describe(part)}; pass a diffusers ControlNetModel folder")
    with open(part / "config.json") as f:
        theirs = json.load(f)
    ours = json.loads(json.dumps(dict(unet.config), default=str))
    # Keys an older config.json lacks (released SD 1.5 ControlNets have no mid_block_type) take
    # ControlNetModel's defaults, as from_pretrained gives them.
    defaults = json.loads(json.dumps({k: p.default for k, p in inspect.signature(ControlNetModel).parameters.items()},
                                     default=str))
    for key in MATCHING:
        want, have = ours.get(key), theirs.get(key, defaults.get(key))
        if key == "transformer_layers_per_block":
            want, have = _per_block(want, ours), _per_block(have, ours)
        if want != have:
            raise UserError(f"--controlnet {folder} was made for another U-Net than the model's frozen base ({key}: "
                            f"{have!r}, the base's {want!r}); pass a ControlNet of the same base")
    if theirs.get("conditioning_channels", 3) != 3:
        raise UserError(f"--controlnet {folder} reads {theirs['conditioning_channels']}-channel control images; "
                        "vidtool gives it RGB images (3 channels)")
    read = {frame: _read_rgb(path) for frame, path in images}
    quiet_diffusers()
    controlnet = ControlNetModel.from_pretrained(part, local_files_only=True, torch_dtype=dtype)
    return FrameControl(controlnet.eval(), read, scale)


def _per_block(value, config: dict) -> list:
    """transformer_layers_per_block as one number per down block (diffusers accepts an int for all)."""
    blocks = len(config["down_block_types"])
    return [value] * blocks if isinstance(value, int) else list(value or [1] * blocks)


def _read_rgb(path: str | Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    if not Path(path).is_file():
        raise UserError(f"--control-image {path}: no such image")
    try:
        with Image.open(path) as image:
            return np.array(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as e:
        raise UserError(f"--control-image {path} is not a readable image; pass a .png or .jpg") from e


def parse_control_images(values: list[str]) -> list[tuple[int, str]]:
    """--control-image FRAME=IMG values -> [(frame, path)]; FRAME may count from the end (-1: last)."""
    parsed = []
    for value in values:
        frame, sep, path = value.partition("=")
        try:
            index = int(frame)
        except ValueError:
            index = None
        if not sep or index is None or not path:
            raise UserError(f"--control-image {value!r}: write FRAME=IMAGE, e.g. 0=edges.png or -1=last.png")
        parsed.append((index, path))
    if len({f for f, _ in parsed}) < len(parsed):
        raise UserError("--control-image names a frame twice; give each frame one image")
    return parsed
