"""Recaptioning clips with a vision-language model, or expanding captions with a language model.

MotionAura recaptions WebVid-10M with LLaVA-NeXT (App. C.2) and captions the sketch-inpainting
videos with Video-LLaVA-7B (Fig. S.9), because short captions guide the denoiser poorly (Table 3,
Table 5). `Captioner` loads such a model from a local transformers folder (never downloading) and
runs it in batches, greedy, with at most `max_new_tokens` new tokens:

- `video`: a video VLM (LLaVA-NeXT-Video, Video-LLaVA, LLaVA-OneVision) gets `frames` frames spread
  over the clip as one video;
- `image`: an image VLM (LLaVA and other image-text-to-text models) gets the same frames as images;
- `text`: a causal language model rewrites the clip's existing caption into a detailed one.

`auto` picks from the folder's config: known video model types, else a vision config (image), else
text. Prompts go through the model's chat template when the processor or tokenizer has one, else
through the "USER: <video>\\n… ASSISTANT:" form the LLaVA model cards use.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vidtool.errors import UserError

# MotionAura App. C.2, the prompt given to LLaVA-NeXT to regenerate each video's description (quoted
# as printed, "image's" included).
PAPER_PROMPT = """Explain in detail about the given video with:
- Focus on the primary subject and any important actions or interactions.
- Highlight key details, such as distinctive features, expressions, or objects.
- Describe the setting and environment, noting any relevant background elements.
- Convey the mood or atmosphere of the scene.
- Combine these elements into a clear, concise caption that accurately represents the image's content and context."""

# Text-only mode (ours, not the paper's): the same points asked of a language model that sees only
# the short caption. `{caption}` marks where the caption goes.
TEXT_PROMPT = """Rewrite this short video caption as a detailed description of the video:
- Focus on the primary subject and any important actions or interactions.
- Highlight key details, such as distinctive features, expressions, or objects.
- Describe the setting and environment, noting any relevant background elements.
- Convey the mood or atmosphere of the scene.
- Combine these elements into a clear, concise caption.
Caption: {caption}
Description:"""

# MotionAura Table 10: maximum text length 256 for its T5-XXL conditioning.
DEFAULT_MAX_NEW_TOKENS = 256
VIDEO_MODEL_TYPES = ("llava_next_video", "video_llava", "llava_onevision")
MODES = ("auto", "video", "image", "text")


@dataclass
class CaptionInput:
    caption: str | None  # the record's caption (text mode expands it)
    frames: np.ndarray | None  # uint8 [K, H, W, 3] for the vision modes


def model_digest(folder: Path) -> str:
    """A digest of a model folder cheap enough for a 30 GB VLM: its config and its weight files' names and sizes."""
    h = hashlib.sha256((folder / "config.json").read_bytes())
    for weights in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        h.update(f"{weights.name}:{weights.stat().st_size}".encode())
    return h.hexdigest()[:16]


def detect_mode(config: dict) -> str:
    if config.get("model_type") in VIDEO_MODEL_TYPES:
        return "video"
    return "image" if "vision_config" in config else "text"


class Captioner:
    def __init__(self, folder: str | os.PathLike, *, mode: str = "auto", prompt: str | None = None,
                 max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, frames: int = 8, device: str = "cpu",
                 dtype: str = "auto"):
        import torch
        from transformers.utils import logging as hf_logging

        self.folder = Path(folder)
        if not (self.folder / "config.json").is_file():
            raise UserError(f"--model {self.folder} is not a transformers model folder (no config.json)")
        if mode not in MODES:
            raise UserError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
        config = json.loads((self.folder / "config.json").read_text(encoding="utf-8"))
        self.mode = detect_mode(config) if mode == "auto" else mode
        if self.mode != "text" and "vision_config" not in config and config.get("model_type") not in VIDEO_MODEL_TYPES:
            raise UserError(f"{self.folder} is a text-only model ({config.get('model_type')}); use --mode text")
        self.prompt = prompt if prompt is not None else (TEXT_PROMPT if self.mode == "text" else PAPER_PROMPT)
        self.max_new_tokens, self.frames, self.device = max_new_tokens, frames, device
        torch_dtype = {"auto": torch.bfloat16 if device.startswith("cuda") else torch.float32, "float32": torch.float32,
                       "bfloat16": torch.bfloat16, "float16": torch.float16}.get(dtype)
        if torch_dtype is None:
            raise UserError(f"--dtype must be auto, float32, bfloat16 or float16, got {dtype!r}")
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        self.processor, self.model = self._load(config, torch_dtype)
        self.model.to(device).eval()
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        # Decoder-only generation continues the last token of every row, so padding goes left.
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.digest = model_digest(self.folder)

    def _load(self, config: dict, torch_dtype):
        from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer

        kwargs = {"local_files_only": True}
        try:
            if self.mode == "text":
                return (AutoTokenizer.from_pretrained(self.folder, **kwargs),
                        AutoModelForCausalLM.from_pretrained(self.folder, dtype=torch_dtype, **kwargs))
            processor = AutoProcessor.from_pretrained(self.folder, **kwargs)
            return processor, AutoModelForImageTextToText.from_pretrained(self.folder, dtype=torch_dtype, **kwargs)
        except ImportError as e:  # transformers' video processors need torchvision
            first = str(e).strip().splitlines()[0]
            raise UserError(f"loading {self.folder} needs a missing package ({first}); for video models: "
                            "pip install torchvision, or --mode image to show the frames as images") from None
        except (OSError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
            raise UserError(f"cannot load a {self.mode} model from {self.folder}: {first}") from None

    @property
    def input_side(self) -> int | None:
        """The largest side the model's processor resizes frames to (its `size`/`crop_size` sides, an
        any-resolution model's largest tile grid), or None where it gives none in pixels (a pixel
        budget, a text model): what the frames need to be read at, no more."""
        if self.mode == "text":
            return None
        owners = [getattr(self.processor, name, None) for name in ("video_processor", "image_processor")]
        owner = next((o for o in (owners if self.mode == "video" else owners[::-1]) if o is not None), None)
        sides = []
        for name in ("size", "crop_size"):
            value = getattr(owner, name, None)
            if isinstance(value, int):
                sides.append(value)
                continue
            # a dict in a processor's config; transformers' SizeDict (an object of optional fields) once loaded
            entries = value if isinstance(value, dict) else getattr(value, "__dict__", {})
            sides += [v for k, v in entries.items() if isinstance(v, int) and not isinstance(v, bool)
                      and k in ("shortest_edge", "longest_edge", "height", "width", "max_height", "max_width")]
        for grid in getattr(owner, "image_grid_pinpoints", None) or []:
            sides += [v for v in grid if isinstance(v, int)]
        return max(sides) if sides and all(v > 0 for v in sides) else None

    def settings(self) -> dict:
        """What the captions depend on, for the shard journal."""
        return {"model": self.digest, "mode": self.mode, "prompt": self.prompt, "max_new_tokens": self.max_new_tokens,
                "frames": self.frames if self.mode != "text" else None, "dtype": str(self.model.dtype)}

    def prompt_text(self, caption: str | None) -> str:
        """The user turn (before the chat template) for one clip."""
        if self.mode != "text":
            return self.prompt
        if "{caption}" in self.prompt:
            return self.prompt.replace("{caption}", caption or "")
        return f"{self.prompt}\n\nCaption: {caption}"

    def _chat(self, text: str) -> str:
        template_owner = self.processor if getattr(self.processor, "chat_template", None) else None
        if template_owner is None and getattr(self.tokenizer, "chat_template", None):
            template_owner = self.tokenizer
        if self.mode == "text":
            if template_owner is not None:
                return template_owner.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                                          tokenize=False)
            return text
        visual = [{"type": "video"}] if self.mode == "video" else [{"type": "image"}] * self.frames
        if template_owner is not None:
            message = {"role": "user", "content": visual + [{"type": "text", "text": text}]}
            return template_owner.apply_chat_template([message], add_generation_prompt=True, tokenize=False)
        marker = getattr(self.processor, "video_token" if self.mode == "video" else "image_token")
        markers = marker if self.mode == "video" else "\n".join([marker] * self.frames)
        return f"USER: {markers}\n{text} ASSISTANT:"

    def caption(self, inputs: list[CaptionInput]) -> list[str]:
        """One new caption per input (whitespace collapsed; may be empty if the model stops at once)."""
        import torch

        prompts = [self._chat(self.prompt_text(item.caption)) for item in inputs]
        if self.mode == "text":
            batch = self.tokenizer(prompts, padding=True, return_tensors="pt")
        elif self.mode == "video":
            batch = self.processor(text=prompts, videos=[item.frames for item in inputs], padding=True, return_tensors="pt")
        else:
            images = [frame for item in inputs for frame in item.frames]
            batch = self.processor(text=prompts, images=images, padding=True, return_tensors="pt")
        batch = batch.to(self.device)
        if "pixel_values" in batch and batch["pixel_values"].is_floating_point():
            batch["pixel_values"] = batch["pixel_values"].to(self.model.dtype)
        if "pixel_values_videos" in batch:
            batch["pixel_values_videos"] = batch["pixel_values_videos"].to(self.model.dtype)
        with torch.inference_mode():
            out = self.model.generate(**batch, max_new_tokens=self.max_new_tokens, do_sample=False,
                                      pad_token_id=self.tokenizer.pad_token_id)
        new = out[:, batch["input_ids"].shape[1] :]
        return [" ".join(text.split()) for text in self.tokenizer.batch_decode(new, skip_special_tokens=True)]


def read_clip_frames(path: Path, count: int, fps: float | None = None, side: int | None = None) -> np.ndarray:
    """`count` frames spread over a clip: a media file, a frame folder or a `video` tensor file (its first video).
    `side`: the short side the captioner resizes frames to (`Captioner.input_side`); a media file is decoded
    no larger than about twice that, so a 4K clip is never held at its own size."""
    from vidtool import video

    if path.suffix.lower() == ".safetensors":
        from vidtool import tensorfile

        clip = tensorfile.load(path, kinds=["video"]).main[0].numpy()
        return clip[np.round(np.linspace(0, len(clip) - 1, count)).astype(np.int64)]
    return video.sample_frames(path, count, fps=fps, shrink_for=side).frames
