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
from typing import Callable

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
                     device: str = "cpu", progress: Callable[[int], None] | None = None) -> Path:
    """Encode every clip of `manifests` with the autoencoder in `vae_folder` and write the set;
    `progress(done)` is called with the number of clips encoded so far."""
    from torch.utils.data import ConcatDataset, DataLoader

    from vidtool.autoencoders.apply import encode_frames
    from vidtool.autoencoders.tiling import Tiling
    from vidtool.checkpoint import from_pretrained, model_tag
    from vidtool.data.clips import ClipDataset
    from vidtool.tensorfile import TensorFile, save
    from vidtool.text import TextEncoder

    vae = from_pretrained(vae_folder, device=device).eval()
    text_encoder = TextEncoder(text_encoder_path, device=device)
    clips = ConcatDataset([ClipDataset(m, frames=frames, fps=fps, size=size) for m in manifests])
    loader = DataLoader(clips, batch_size=batch_size, collate_fn=lambda items: items)
    latents, texts, masks, prompts = [], [], [], []
    with torch.inference_mode():
        for items in loader:
            video = torch.stack([item["video"] for item in items]).numpy()
            latents.append(encode_frames(vae, video, Tiling(), device).latents.half())
            captions = [item["caption"] for item in items]
            embedded = text_encoder.encode(captions)
            texts.append(embedded.tokens.half().cpu())
            masks.append(embedded.mask.cpu())
            prompts.extend(captions)
            if progress:
                progress(len(prompts))
        null = text_encoder.encode([""])
    latents = torch.cat(latents)
    info = LatentSetInfo(vae=model_tag(vae_folder), latent_std=float(latents.float().std()),
                         text_encoder=text_encoder.name, frames=frames, size=size)
    tf = TensorFile(kind="dataset-shard", tensors={
        "latents": latents, "text": torch.cat(texts), "text_mask": torch.cat(masks),
        "null_text": null.tokens.half().cpu(), "null_mask": null.mask.cpu()},
        model=info.vae, params=info.__dict__)
    tf.set_prompts(prompts)
    tf.extra["model_path"] = str(Path(vae_folder).resolve())
    save(tf, out_file)
    return out_file


class LatentDataset(torch.utils.data.Dataset):
    """Items: dict(latents=float [C, T, h, w] times `latent_scale`, text, text_mask, null_text,
    null_mask, prompt). The default collate stacks them (null_* gain a batch dimension)."""

    def __init__(self, path: str | Path, latent_scale: float | None = None):
        from vidtool.tensorfile import load

        tf = load(path, kinds=["dataset-shard"])
        missing = {"latents", "text", "text_mask", "null_text", "null_mask"} - set(tf.tensors)
        if missing:
            raise UserError(f"{path} is not a latent set (missing {sorted(missing)}); build one with "
                            "`vidtool train-denoiser --data MANIFEST` or vidtool.data.latents.build_latent_set")
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
