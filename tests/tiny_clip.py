"""A tiny random CLIP (the real transformers classes) with a character-level tokenizer, saved as a
local folder: what the CLIP-based metrics and scores load in tests, where no weights can be fetched."""

from __future__ import annotations

import json
from pathlib import Path


def save_clip_tokenizer(folder: Path, letters: str = "abcdefghijklmnopqrstuvwxyz"):
    """A character-level BPE vocabulary (no merges): a valid CLIP tokenizer for lower-case prompts.
    The special tokens come last, as in CLIP's own vocabulary (OWL-ViT takes a query whose first
    token is id 0 for padding)."""
    from transformers import CLIPTokenizer

    vocab = {c: i for i, c in enumerate(letters)}
    vocab.update({c + "</w>": len(letters) + i for i, c in enumerate(letters)})
    vocab.update({"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1})
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    tokenizer.save_pretrained(folder)
    return tokenizer


def save_tiny_clip(folder: Path, *, letters: str = "abcdefghijklmnopqrstuvwxyz", image_size: int = 32) -> Path:
    import torch
    from transformers import CLIPConfig, CLIPModel

    vocab = save_clip_tokenizer(folder, letters).get_vocab()
    end = vocab["<|endoftext|>"]
    config = CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=37, max_position_embeddings=77, bos_token_id=vocab["<|startoftext|>"],
                         eos_token_id=end, pad_token_id=end),
        vision_config=dict(image_size=image_size, patch_size=8, hidden_size=32, num_hidden_layers=1,
                           num_attention_heads=2, intermediate_size=37),
        projection_dim=16)
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(folder)
    return folder
