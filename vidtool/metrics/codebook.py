"""Codebook statistics of a quantized tokenizer over a set of token files.

- utilisation: the fraction of the K codes that occur at least once in the set;
- perplexity: exp(H) with H = −Σ p_k ln p_k the entropy of the code frequencies p_k — the
  "effective number of codes" (K when every code is equally frequent, 1 when one code is used).

K comes from `--codebook-size` or from the model folder's config.json (`config.codebook_size`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.special import xlogy

from vidtool.errors import UserError


@dataclass(frozen=True)
class CodebookStats:
    utilisation: float
    perplexity: float
    used: int
    size: int
    tokens: int


def code_counts(tokens: np.ndarray, size: int, key: str = "tokens") -> np.ndarray:
    """How often each code 0..size-1 occurs in an integer array -> int64 [size]."""
    flat = np.asarray(tokens).ravel().astype(np.int64)
    if flat.size and (flat.min() < 0 or flat.max() >= size):
        raise UserError(f"{key}: token ids span {flat.min()}..{flat.max()}, outside a codebook of {size}; "
                        "pass the tokenizer's --codebook-size or --model")
    return np.bincount(flat, minlength=size)


def codebook_stats(counts: np.ndarray) -> CodebookStats:
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if total == 0:
        raise UserError("the token set holds no tokens")
    p = counts / total
    entropy = -xlogy(p, p).sum()
    used = int((counts > 0).sum())
    return CodebookStats(used / len(counts), float(np.exp(entropy)), used, len(counts), total)


def codebook_size_from_model(folder: str) -> int:
    config = Path(folder) / "config.json"
    try:
        doc = json.loads(config.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise UserError(f"cannot read {config}: {error}; pass --codebook-size instead") from error
    size = doc.get("config", {}).get("codebook_size")
    if not isinstance(size, int) or size < 1:
        raise UserError(f"{config} has no config.codebook_size; is it a quantized tokenizer? pass --codebook-size")
    return size
