"""Latent datasets for the generators: clips encoded once by a frozen autoencoder, captions encoded
once by the text encoder, kept in one tensor file (kind `dataset-shard`).

Diffusion training then reads tensors, not videos: at the tiny scale 2,000 clips of 16 frames are
8 MB of latents, and the VAE never runs inside the training loop.

File layout: "latents" float16 [N, C, T, h, w] (unscaled), "text" float16 [N, L, D], "text_mask"
bool [N, L], "null_text" [1, L, D] / "null_mask" [1, L] (the empty prompt, for classifier-free
guidance); metadata `vidtool.model` = the autoencoder's tag, `vidtool.prompts`, and in params the
latent standard deviation, the text encoder and the clip geometry.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from vidtool.errors import UserError


@dataclass
class LatentSetInfo:
    vae: str  # "family@digest"
    latent_std: float
    text_encoder: str
    frames: int
    size: int


def build_latent_set(manifests: list[Path], vae_folder: Path, out_file: Path, *, frames: int = 16, size: int = 64,
                     fps: float | None = None, text_encoder_path: Path | None = None, batch_size: int = 16,
                     device: str = "cpu", progress: Callable[[int], None] | None = None,
                     text_cache: Path | None = None) -> Path:
    """Encode every clip of `manifests` with the autoencoder in `vae_folder` and write the set;
    `progress(done)` is called with the number of clips encoded so far. With `text_cache` (a
    `vidtool embed-text` file or folder) captions are looked up there instead of encoded."""
    from vidtool.autoencoders.apply import encode_frames
    from vidtool.autoencoders.tiling import default_tiling
    from vidtool.checkpoint import from_pretrained, model_tag
    from vidtool.tensorfile import TensorFile, save

    vae = from_pretrained(vae_folder, device=device).eval()

    def encode(items: list[dict], video) -> dict[str, torch.Tensor]:
        return {"latents": encode_frames(vae, video, default_tiling(vae), device).latents.half()}

    encoded = encode_clip_set(manifests, encode, frames=frames, size=size, fps=fps,
                              text_encoder_path=text_encoder_path, batch_size=batch_size, device=device,
                              progress=progress, text_cache=text_cache)
    info = LatentSetInfo(vae=model_tag(vae_folder), latent_std=float(encoded.tensors["latents"].float().std()),
                         text_encoder=encoded.text_encoder, frames=frames, size=size)
    tf = TensorFile(kind="dataset-shard", tensors=encoded.tensors, model=info.vae, params=info.__dict__)
    tf.set_prompts(encoded.prompts)
    tf.extra["model_path"] = str(Path(vae_folder).resolve())
    save(tf, out_file)
    return out_file


TEXT_TENSORS = {"text", "text_mask", "null_text", "null_mask"}


def load_set(path: str | Path, required: set[str], what: str, how: str):
    """A `dataset-shard` tensor file holding `required` and the caption tensors; else a one-line
    error naming `what` it should have been and `how` to build one."""
    from vidtool.tensorfile import load

    tf = load(path, kinds=["dataset-shard"])
    missing = (required | TEXT_TENSORS) - set(tf.tensors)
    if missing:
        raise UserError(f"{path} is not {what} (missing {sorted(missing)}); build one with {how}")
    return tf


@dataclass
class EncodedClips:
    tensors: dict[str, torch.Tensor]  # what `encode` returned, concatenated, plus text, text_mask, null_text, null_mask
    prompts: list[str]
    text_encoder: str


def encode_clip_set(manifests: list[Path], encode: Callable[[list[dict], Any], dict[str, torch.Tensor]], *,
                    frames: int, size: int, fps: float | None, text_encoder_path: Path | None, batch_size: int,
                    device: str, progress: Callable[[int], None] | None,
                    text_cache: Path | None = None) -> EncodedClips:
    """Read every clip of `manifests` once, in order, and return `encode(items, uint8 video [B,T,H,W,3])`
    for all of them with the captions' text embeddings (float16) and the empty prompt's."""
    from torch.utils.data import ConcatDataset, DataLoader

    from vidtool.data.clips import ClipDataset
    from vidtool.text_cache import text_encoder_or_cache

    text_encoder = text_encoder_or_cache(text_cache, text_encoder_path, device=device)
    clips = ConcatDataset([ClipDataset(m, frames=frames, fps=fps, size=size) for m in manifests])
    loader = DataLoader(clips, batch_size=batch_size, collate_fn=lambda items: items)
    parts: dict[str, list[torch.Tensor]] = {}
    prompts: list[str] = []
    with torch.inference_mode():
        for items in loader:
            video = torch.stack([item["video"] for item in items]).numpy()
            captions = [item["caption"] for item in items]
            embedded = text_encoder.encode(captions)
            for name, tensor in {**encode(items, video), "text": embedded.tokens.half().cpu(),
                                 "text_mask": embedded.mask.cpu()}.items():
                parts.setdefault(name, []).append(tensor)
            prompts.extend(captions)
            if progress:
                progress(len(prompts))
        null = text_encoder.encode([""])
    tensors = {name: torch.cat(chunks) for name, chunks in parts.items()}
    tensors.update(null_text=null.tokens.half().cpu(), null_mask=null.mask.cpu())
    return EncodedClips(tensors, prompts, text_encoder.name)


class LatentDataset(torch.utils.data.Dataset):
    """Items: dict(latents=float [C, T, h, w] times `latent_scale`, text, text_mask, null_text,
    null_mask, prompt). The default collate stacks them (null_* gain a batch dimension)."""

    def __init__(self, path: str | Path, latent_scale: float | None = None):
        tf = load_set(path, {"latents"}, "a latent set", "`vidtool train-denoiser --data MANIFEST` or "
                                                         "vidtool.data.latents.build_latent_set")
        self.path = Path(path)
        self.info = LatentSetInfo(**tf.params)
        self.vae_path = tf.extra.get("model_path")
        self.latent_scale = latent_scale if latent_scale is not None else 1.0 / self.info.latent_std
        self.latents = tf["latents"]
        self.text, self.text_mask = tf["text"], tf["text_mask"]
        self.null_text, self.null_mask = tf["null_text"][0].float(), tf["null_mask"][0]
        self.prompts = tf.prompts()

    def __len__(self) -> int:
        return self.latents.shape[0]

    def __getitem__(self, index: int) -> dict:
        return {
            "latents": self.latents[index].float() * self.latent_scale,
            "text": self.text[index].float(),
            "text_mask": self.text_mask[index],
            "null_text": self.null_text,
            "null_mask": self.null_mask,
            "prompt": self.prompts[index],
        }
