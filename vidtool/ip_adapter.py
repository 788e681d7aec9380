"""IP-Adapter image prompts for HARIVO and FusionFrames' keyframe model (HARIVO §1, §4.3: add-ons of
the frozen text-to-image base work with no retraining).

An IP-Adapter (Ye et al. 2023) adds decoupled cross-attention to the base U-Net: every
cross-attention layer also attends, with its own key/value projections (`to_k_ip`, `to_v_ip`) and
weight `scale`, to 4 image tokens projected (`image_proj`) from a CLIP image embedding. diffusers
does the model side: `UNet2DConditionModel._load_ip_adapter_weights` installs its
`IPAdapterAttnProcessor`s and the image projection, and the U-Net then takes
`added_cond_kwargs={"image_embeds": [...]}`. Written here: reading the file as released (one
safetensors file with `image_proj.*` and `ip_adapter.<n>.to_k_ip/to_v_ip.weight` keys) and checking
it against the base before anything changes, the image embedding by a local
`CLIPVisionModelWithProjection` folder, and the rows of a guided batch: the conditional half gets
the image, the unconditional half zeros (diffusers' negative image embedding), as
`vidtool.pipelines.conditioning.with_null` orders them.

The folder is laid out as h94/IP-Adapter's `models/` or, for SDXL, `sdxl_models/`: the adapter file
(`--ip-adapter DIR` with one `*.safetensors` in it, or the file itself) and the image encoder in
`image_encoder/` beside it (ip-adapter_sdxl_vit-h reads the ViT-H encoder of `models/image_encoder`:
put it beside that file). On an SDXL base the U-Net takes the image's `image_embeds` in the same
`added_cond_kwargs` as the pooled `text_embeds` and `time_ids` (vidtool.generators.t2i.predict).
Only the plain IP-Adapter (`image_proj.proj`, `image_proj.norm`) is read; Plus and Face-ID
variants (resamplers over the encoder's hidden states) are refused in one line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from vidtool.errors import UserError

TOKENS = 4  # image tokens of the plain IP-Adapter


class ImagePrompt(nn.Module):
    """The CLIP image embedding of the --image prompt, spread over the rows of a guided batch."""

    def __init__(self, embedding: torch.Tensor, scale: float):
        super().__init__()
        self.register_buffer("embedding", embedding, persistent=False)  # [1, D]
        self.scale = scale

    def added_cond_kwargs(self, rows: int) -> dict:
        """For a guided batch of `rows` images (conditional half first): the image, then zeros."""
        if rows % 2:
            raise ValueError("an IP-Adapter image prompt needs a guided batch (conditional half, then unconditional)")
        image = self.embedding.expand(rows // 2, -1)
        embeds = torch.cat([image, torch.zeros_like(image)])[:, None]  # [rows, 1 image, D]
        return {"image_embeds": [embeds]}


def _adapter_file(path: Path) -> Path:
    if path.is_file():
        return path
    if not path.is_dir():
        raise UserError(f"--ip-adapter {path}: no such file or folder")
    files = sorted(path.glob("*.safetensors"))
    if len(files) != 1:
        found = ", ".join(f.name for f in files) or "none"
        raise UserError(f"--ip-adapter {path} should hold one IP-Adapter .safetensors file (found: {found}); "
                        "pass the file itself")
    return files[0]


def read(path: str | Path, unet: nn.Module) -> tuple[dict, Path]:
    """The IP-Adapter at `path` as diffusers' `{"image_proj": ..., "ip_adapter": ...}`, checked
    against `unet` layer by layer, and the image encoder folder beside it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    file = _adapter_file(Path(path))
    try:
        tensors = load_file(str(file))
    except (SafetensorError, OSError) as e:
        raise UserError(f"--ip-adapter {file} is not a safetensors file ({e}); IP-Adapters are read from "
                        ".safetensors only, never from pickles") from e
    state = {"image_proj": {}, "ip_adapter": {}}
    for key, value in tensors.items():
        part, _, name = key.partition(".")
        if part not in state:
            raise UserError(f"--ip-adapter {file} has a key {key!r} outside image_proj.* and ip_adapter.*; "
                            "pass an IP-Adapter file as released (ip-adapter_sd15.safetensors)")
        state[part][name] = value
    if "proj.weight" not in state["image_proj"] or "norm.weight" not in state["image_proj"]:
        raise UserError(f"--ip-adapter {file} is not a plain IP-Adapter (image_proj.proj and .norm); the Plus "
                        "and Face-ID variants are not supported")
    cross = [name.removesuffix(".processor") for name in unet.attn_processors if not name.endswith("attn1.processor")]
    want = {f"{2 * i + 1}.to_{kv}_ip.weight": unet.get_submodule(name).to_k.weight.shape
            for i, name in enumerate(cross) for kv in "kv"}
    have = {k: v.shape for k, v in state["ip_adapter"].items()}
    if have != want:
        wrong = sorted(set(have) ^ set(want)) or [k for k in want if have[k] != want[k]]
        raise UserError(f"--ip-adapter {file} was made for another U-Net than the model's frozen base "
                        f"({len(have) // 2} cross-attention layers, the base's {len(cross)}; first mismatch: "
                        f"{wrong[0]}); pass an IP-Adapter of the same base")
    proj = state["image_proj"]["proj.weight"]
    if proj.shape[0] != TOKENS * unet.config.cross_attention_dim:
        raise UserError(f"--ip-adapter {file} projects images to width {proj.shape[0] // TOKENS}, the base's "
                        f"cross-attention is {unet.config.cross_attention_dim} wide; pass an IP-Adapter of the same base")
    encoder = file.parent / "image_encoder"
    if not (encoder / "config.json").is_file():
        raise UserError(f"--ip-adapter {file}: no image_encoder/ folder beside it (a transformers "
                        "CLIPVisionModelWithProjection, as in h94/IP-Adapter's models/)")
    return state, encoder


def embed_image(encoder_folder: Path, image: str | Path, width: int) -> torch.Tensor:
    """The CLIP image embedding [1, D] of `image` by the CLIPVisionModelWithProjection in
    `encoder_folder` (its preprocessor_config.json if any, else CLIP's standard preprocessing)."""
    from PIL import Image, UnidentifiedImageError
    from transformers import CLIPVisionModelWithProjection
    from transformers.utils import logging as hf_logging

    try:  # transformers 5: the Pillow backend by name (the default one wants torchvision)
        from transformers import CLIPImageProcessorPil as CLIPImageProcessor
    except ImportError:
        from transformers import CLIPImageProcessor
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # its weight-loading bar would break --quiet and clutter pipes
    try:
        model = CLIPVisionModelWithProjection.from_pretrained(encoder_folder, local_files_only=True)
    except (OSError, ValueError) as e:
        raise UserError(f"{encoder_folder} is not a transformers CLIPVisionModelWithProjection folder ({e})") from e
    if model.config.projection_dim != width:
        raise UserError(f"{encoder_folder} embeds images in {model.config.projection_dim} dimensions; the IP-Adapter "
                        f"beside it reads {width}: pass the image encoder it was trained with")
    if not Path(image).is_file():
        raise UserError(f"--image {image}: no such image")
    try:
        with Image.open(image) as opened:
            rgb = np.array(opened.convert("RGB"))
    except (UnidentifiedImageError, OSError) as e:
        raise UserError(f"--image {image} is not a readable image; pass a .png or .jpg") from e
    if (encoder_folder / "preprocessor_config.json").is_file():
        processor = CLIPImageProcessor.from_pretrained(encoder_folder, local_files_only=True)
    else:
        side = model.config.image_size
        processor = CLIPImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side})
    pixels = processor(images=rgb, return_tensors="pt").pixel_values
    with torch.no_grad():
        return model(pixel_values=pixels).image_embeds.float()


def load(path: str | Path, image: str | Path, scale: float, unet: nn.Module) -> tuple[ImagePrompt, dict]:
    """Everything read and checked, nothing changed yet: the image prompt and the adapter's state."""
    state, encoder = read(path, unet)
    embedding = embed_image(encoder, image, state["image_proj"]["proj.weight"].shape[1])
    return ImagePrompt(embedding, scale), state


def attach(unet: nn.Module, state: dict, scale: float) -> None:
    """diffusers installs the decoupled cross-attention and the image projection; every
    IP-Adapter processor then weighs the image tokens by `scale`."""
    from diffusers.models.attention_processor import IPAdapterAttnProcessor, IPAdapterAttnProcessor2_0

    unet._load_ip_adapter_weights([state], low_cpu_mem_usage=False)
    for processor in unet.attn_processors.values():
        if isinstance(processor, (IPAdapterAttnProcessor, IPAdapterAttnProcessor2_0)):
            processor.scale = [scale]
