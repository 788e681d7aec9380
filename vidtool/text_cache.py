"""A text-embedding cache: prompts encoded once (`vidtool embed-text`), so training and sampling
read tensors instead of holding a large text encoder (a T5-XXL encoder is 4.7B parameters, 9 GB in
bf16 — more than the tiny generators by three orders of magnitude).

File (kind `embeddings`): "embeddings" float16 [N, L, D] (last hidden states, zero at padding),
"text_mask" bool [N, L], one prompt per row in `vidtool.prompts`, params {"text_encoder": name,
"max_length": L}; of an SDXL pipeline's two encoders also "text_embeds" float16 [N, P], the pooled
projection its U-Net takes besides the tokens (vidtool.text). Rows are unique prompts in first-seen order; the empty prompt (classifier-free
guidance's null condition) is always present. A cache may be split into shard files (one per task
of a job array); `EmbeddingCache` reads a file or a folder of them.

`EmbeddingCache.encode(prompts)` answers like `vidtool.text.TextEncoder.encode`, so code that takes
an encoder takes a cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from vidtool.errors import UserError
from vidtool.text import TextEmbeddings, TextEncoder


def unique_prompts(prompts: list[str]) -> list[str]:
    """The distinct prompts in first-seen order, the empty prompt first."""
    return list(dict.fromkeys(["", *prompts]))


def embed(prompts: list[str], encoder: TextEncoder, *, batch_size: int = 64,
          progress: Callable[[int], None] | None = None):
    """Encode `prompts` (as given, one row each) into an `embeddings` tensor file."""
    from vidtool.tensorfile import TensorFile

    tokens, masks, pooled = [], [], []
    for start in range(0, len(prompts), batch_size):
        out = encoder.encode(prompts[start : start + batch_size])
        tokens.append(out.tokens.half().cpu())
        masks.append(out.mask.cpu())
        if out.text_embeds is not None:
            pooled.append(out.text_embeds.half().cpu())
        if progress:
            progress(min(start + batch_size, len(prompts)))
    tensors = {"embeddings": torch.cat(tokens), "text_mask": torch.cat(masks)}
    if pooled:
        tensors["text_embeds"] = torch.cat(pooled)
    tf = TensorFile(kind="embeddings", tensors=tensors,
                    params={"text_encoder": encoder.name, "max_length": encoder.max_length})
    tf.set_prompts(prompts)
    return tf


class EmbeddingCache:
    """Prompt → cached token embeddings, from one cache file or a folder of shard files."""

    def __init__(self, path: str | Path, device: str | torch.device = "cpu"):
        from vidtool.tensorfile import load

        path, self.device = Path(path), torch.device(device)
        files = sorted(path.glob("*.safetensors")) if path.is_dir() else [path]
        if not files:
            raise UserError(f"{path} holds no .safetensors files; write a cache with `vidtool embed-text`")
        self.path, self.rows = path, {}
        self.name = self.max_length = self.dim = self.text_embeds_dim = None
        for file in files:
            tf = load(file, kinds=["embeddings"])
            prompts = tf.prompts()
            if prompts is None or "text_mask" not in tf.tensors:
                raise UserError(f"{file} is an embeddings file without prompts or text_mask; "
                                "write text caches with `vidtool embed-text`")
            name, (length, dim) = tf.params.get("text_encoder"), tf.main.shape[1:]
            pooled = tf.tensors.get("text_embeds")
            pooled_dim = None if pooled is None else int(pooled.shape[1])
            if self.name is not None and (name, length, dim, pooled_dim) != (self.name, self.max_length, self.dim,
                                                                             self.text_embeds_dim):
                raise UserError(f"{file} holds {name} embeddings [{length}, {dim}], the others "
                                f"{self.name} [{self.max_length}, {self.dim}]; keep one encoder per cache")
            self.name, self.max_length, self.dim, self.text_embeds_dim = name, length, dim, pooled_dim
            for i, prompt in enumerate(prompts):
                self.rows.setdefault(prompt, (tf["embeddings"][i], tf["text_mask"][i],
                                              None if pooled is None else pooled[i]))

    def __len__(self) -> int:
        return len(self.rows)

    def encode(self, prompts: list[str]) -> TextEmbeddings:
        missing = [p for p in prompts if p not in self.rows]
        if missing:
            raise UserError(f"{len(missing)} prompt(s) are not in the text cache {self.path} (first: {missing[0]!r}); "
                            "run `vidtool embed-text` on them too")
        tokens = torch.stack([self.rows[p][0] for p in prompts]).float()
        mask = torch.stack([self.rows[p][1] for p in prompts])
        pooled = (tokens * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp_min(1)
        text_embeds = (None if self.text_embeds_dim is None
                       else torch.stack([self.rows[p][2] for p in prompts]).float().to(self.device))
        return TextEmbeddings(tokens=tokens.to(self.device), mask=mask.to(self.device),
                              pooled=torch.nn.functional.normalize(pooled, dim=-1).to(self.device),
                              text_embeds=text_embeds)


def text_encoder_or_cache(cache: str | Path | None, encoder_path: str | Path | None, *, device: str = "cpu",
                          max_length: int | None = None, dtype: torch.dtype | None = None) -> TextEncoder | EmbeddingCache:
    """The cache when one is named (refusing an encoder beside it), else the encoder (its weights cast
    to `dtype`). An `encoder_path` that is a cache (a .safetensors file, or a folder of them without
    config.json) counts as naming the cache, so every `--text-encoder` option also takes one."""
    if cache is None and encoder_path is not None and is_cache(encoder_path):
        cache, encoder_path = encoder_path, None
    if cache is not None:
        if encoder_path is not None:
            raise UserError("give a text encoder or a text cache (--embeddings), not both")
        found = EmbeddingCache(cache, device=device)
        # One number of text tokens from training set to sampling (the frame-wise token generator
        # of HARIVO, for one, is built for exactly that many).
        if max_length is not None and found.max_length != max_length:
            raise UserError(f"the text cache {cache} holds {found.max_length} tokens per prompt; this model reads "
                            f"{max_length}: rerun `vidtool embed-text --max-length {max_length}`")
        return found
    kwargs = {} if max_length is None else {"max_length": max_length}
    return TextEncoder(encoder_path, device=device, dtype=dtype, **kwargs)


def is_cache(path: str | Path) -> bool:
    path = Path(path)
    if path.is_dir():
        return not (path / "config.json").is_file() and any(path.glob("*.safetensors"))
    return path.suffix == ".safetensors"


def matching_encoder(cache: str | Path | None, encoder_path: str | Path | None, *, folder: str | Path,
                     trained_with: str, dim: int, device: str = "cpu", max_length: int | None = None,
                     dtype: torch.dtype | None = None, text_embeds_dim: int | None = None) -> TextEncoder | EmbeddingCache:
    """`text_encoder_or_cache`, refused when its token width is not the `dim` the model in `folder`
    was trained with (`trained_with` names that encoder in the message), or when the model's U-Net
    takes a pooled text embedding of `text_embeds_dim` (SDXL) that the encoder does not give."""
    encoder = text_encoder_or_cache(cache, encoder_path, device=device, max_length=max_length, dtype=dtype)
    if encoder.dim != dim:
        raise UserError(f"{folder} was trained with {trained_with} ({dim}-d tokens); the text encoder {encoder.path} "
                        f"gives {encoder.dim}-d tokens; pass the matching --text-encoder")
    if text_embeds_dim is not None and encoder.text_embeds_dim != text_embeds_dim:
        gives = f"{encoder.text_embeds_dim}-d ones" if encoder.text_embeds_dim else "none"
        raise UserError(f"{folder} takes {text_embeds_dim}-d pooled text embeddings (an SDXL U-Net); the text encoder "
                        f"{encoder.path} gives {gives}; pass the SDXL pipeline folder as --text-encoder")
    return encoder


@dataclass
class EncodedPrompts:
    """Prompts encoded before sampling, so that the text encoder can leave the device first."""

    tokens: torch.Tensor  # [N, L, D] on the host
    mask: torch.Tensor  # [N, L] on the host
    null: tuple[torch.Tensor, torch.Tensor]  # the empty prompt's tokens [L, D] and mask [L]
    text_embeds: torch.Tensor | None = None  # [N, P] pooled embeddings on the host (an SDXL pipeline's)
    null_text_embeds: torch.Tensor | None = None  # [P], the empty prompt's

    def pooled(self, rows, device: str | torch.device) -> dict[str, torch.Tensor]:
        """The pipelines' keyword arguments for the pooled embeddings of `rows` (none without them)."""
        if self.text_embeds is None:
            return {}
        return {"text_embeds": self.text_embeds[rows].to(device), "null_text_embeds": self.null_text_embeds.to(device)}


def encode_prompts(encoder, prompts: list[str], batch_size: int) -> EncodedPrompts:
    """Every prompt's token embeddings and mask (kept on the host), the empty prompt's (on the
    encoder's device) and, from an SDXL pipeline's encoders, the pooled embeddings of both."""
    encoded = [encoder.encode(prompts[i : i + batch_size]) for i in range(0, len(prompts), batch_size)]
    null = encoder.encode([""])
    pooled = {}
    if null.text_embeds is not None:
        pooled = {"text_embeds": torch.cat([e.text_embeds.cpu() for e in encoded]),
                  "null_text_embeds": null.text_embeds[0]}
    return EncodedPrompts(torch.cat([e.tokens.cpu() for e in encoded]), torch.cat([e.mask.cpu() for e in encoded]),
                          (null.tokens[0], null.mask[0]), **pooled)
