"""Motion-latent sets for LaMD's DMG: clips encoded once by a frozen MCD-VAE, kept in one tensor file
(kind `dataset-shard`), the counterpart of vidtool.data.latents for a motion–content autoencoder.

File layout: "mean", "logvar" float16 [N, d, h, w] (the bottleneck of Eq. 1, so every epoch draws a
fresh z_m = μ + ε·σ, the aggregate posterior the decoder was trained on), "content" float16
[N, d', h, w] (f_x0 of each clip's first frame), "text" float16 [N, L, D] / "text_mask" bool
[N, L] and "null_text" / "null_mask" (the empty prompt), "label" int64 [N] when every manifest
record has an integer label; metadata `vidtool.model` = the MCD-VAE's tag, `vidtool.prompts`, and
the geometry in params.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from vidtool.errors import UserError


@dataclass
class MotionSetInfo:
    vae: str  # "mcd-vae@digest"
    latent_std: float  # of sampled z_m over the set
    text_encoder: str
    text_dim: int
    frames: int
    size: int
    motion_channels: int
    content_channels: int
    sample_size: int
    num_classes: int  # 0 without labels
    fps: float | None  # the rate clips were resampled to (None: their own)


def build_motion_set(manifests: list[Path], vae_folder: Path, out_file: Path, *, size: int = 64,
                     fps: float | None = None, text_encoder_path: Path | None = None, batch_size: int = 16,
                     device: str = "cpu", progress: Callable[[int], None] | None = None) -> Path:
    """Encode every clip of `manifests` (L frames, L from the MCD-VAE) and its caption; write the set.
    Each encoded batch is kept beside `out_file` until the set is written, so a killed build resumes
    (vidtool.data.partial)."""
    from vidtool.checkpoint import from_pretrained, model_tag
    from vidtool.data.latents import build_settings, encode_clip_set
    from vidtool.tensorfile import TensorFile, save
    from vidtool.video import frames_to_model

    vae = from_pretrained(vae_folder, device=device).float().eval()
    if vae.family != "mcd-vae":
        raise UserError(f"--vae {vae_folder} is a {vae.family} model; the dmg needs an mcd-vae's motion latents")

    def encode(items: list[dict], frames) -> dict[str, torch.Tensor]:
        video = frames_to_model(frames).to(device)
        encoded = vae.encode(video)
        labels = [item.get("label") for item in items]
        known = [isinstance(v, int) and not isinstance(v, bool) for v in labels]
        return {"mean": encoded.mean.half().cpu(), "logvar": encoded.logvar.half().cpu(),
                "content": vae.encode_content(video[:, :, 0]).latent.half().cpu(),
                "label": torch.tensor([v if k else 0 for v, k in zip(labels, known)], dtype=torch.long),
                "label_known": torch.tensor(known)}

    settings = build_settings("motion", manifests, vae_folder, frames=vae.frames, size=size, fps=fps,
                              text_encoder_path=text_encoder_path, batch_size=batch_size)
    made = encode_clip_set(manifests, encode, frames=vae.frames, size=size, fps=fps,
                           text_encoder_path=text_encoder_path, batch_size=batch_size, device=device,
                           progress=progress, out_file=out_file, settings=settings)
    tensors, prompts = made.tensors, made.prompts
    label, has_labels = tensors.pop("label"), bool(tensors.pop("label_known").all())
    mean, logvar, content = tensors["mean"], tensors["logvar"], tensors["content"]
    sampled = mean.float() + torch.randn(mean.shape, generator=torch.Generator().manual_seed(0)) * (0.5 * logvar.float()).exp()
    if has_labels:
        tensors["label"] = label
    info = MotionSetInfo(vae=model_tag(vae_folder), latent_std=float(sampled.std()), text_encoder=made.text_encoder,
                         text_dim=tensors["text"].shape[-1], frames=vae.frames, size=size,
                         motion_channels=mean.shape[1], content_channels=content.shape[1], sample_size=mean.shape[2],
                         num_classes=int(label.max()) + 1 if has_labels else 0, fps=fps)
    tf = TensorFile(kind="dataset-shard", tensors=tensors, model=info.vae, params=info.__dict__)
    tf.set_prompts(prompts)
    tf.extra["model_path"] = str(Path(vae_folder).resolve())
    save(tf, out_file)
    made.kept.finish()
    return out_file


class MotionLatentDataset(torch.utils.data.Dataset):
    """Items: dict(motion = z_m sampled from the stored posterior times `latent_scale`, content,
    text, text_mask, null_text, null_mask, prompt[, label]). The default collate stacks them."""

    def __init__(self, path: str | Path):
        from vidtool.data.latents import load_set

        tf = load_set(path, {"mean", "logvar", "content"}, "a motion-latent set",
                      "`vidtool train-denoiser --family dmg --vae MCD_VAE --data MANIFEST`")
        self.path = Path(path)
        self.info = MotionSetInfo(**tf.params)
        self.vae_path = tf.extra.get("model_path")
        self.latent_scale = 1.0 / self.info.latent_std
        self.mean, self.logvar, self.content = tf["mean"], tf["logvar"], tf["content"]
        self.text, self.text_mask = tf["text"], tf["text_mask"]
        self.null_text, self.null_mask = tf["null_text"][0].float(), tf["null_mask"][0]
        self.labels = tf.tensors.get("label")
        self.prompts = tf.prompts()

    def __len__(self) -> int:
        return self.mean.shape[0]

    def __getitem__(self, index: int) -> dict:
        mean, std = self.mean[index].float(), (0.5 * self.logvar[index].float()).exp()
        item = {
            "motion": (mean + torch.randn_like(mean) * std) * self.latent_scale,
            "content": self.content[index].float(),
            "text": self.text[index].float(),
            "text_mask": self.text_mask[index],
            "null_text": self.null_text,
            "null_mask": self.null_mask,
            "prompt": self.prompts[index],
        }
        if self.labels is not None:
            item["label"] = self.labels[index]
        return item
