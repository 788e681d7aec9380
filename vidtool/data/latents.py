"""Latent datasets for the generators: clips encoded once by a frozen autoencoder, captions encoded
once by the text encoder, kept in one tensor file (kind `dataset-shard`).

Diffusion training then reads tensors, not videos: at the tiny scale 2,000 clips of 16 frames are
8 MB of latents, and the VAE never runs inside the training loop.

File layout: "latents" float16 [N, C, T, h, w] (unscaled), "text" float16 [N, L, D], "text_mask"
bool [N, L], "null_text" [1, L, D] / "null_mask" [1, L] (the empty prompt, for classifier-free
guidance), and with an SDXL pipeline's text encoders "text_embeds" float16 [N, P] / "null_text_embeds"
[1, P], the pooled projection its U-Net takes besides the tokens (vidtool.text); metadata `vidtool.model` = the autoencoder's tag, `vidtool.prompts`, and in params the
latent standard deviation, the text encoder and the clip geometry.

A bucketed set (built with `buckets`, vidtool.data.buckets) encodes each clip at its bucket's shape:
one tensor "latents@HxWxT" per bucket, its clips in order, and "bucket" int64 [N], each clip's
bucket (an index into params' `buckets`); the clips of bucket 0 come first, then those of bucket 1,
and so on, and the text tensors follow that order. Clips that fit no bucket are left out.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from vidtool.data.buckets import Bucket, assign_buckets
from vidtool.data.partial import PartialSet
from vidtool.errors import UserError


@dataclass
class LatentSetInfo:
    vae: str  # "family@digest"
    latent_std: float
    text_encoder: str
    frames: int  # of a bucketed set: the fewest of any bucket, what every clip has at least
    size: int  # of a bucketed set: the shortest side of any bucket
    buckets: list[str] | None = None  # bucket shapes HxW:T of a bucketed set
    # The autoencoder's own latent scale when it declares one (an SD VAE's scaling_factor, the scale
    # a pretrained SD U-Net was trained at); None: the set is scaled to unit variance.
    declared_scale: float | None = None
    text_length: int | None = None  # text tokens per caption: what generators trained on it read
    text_encoder_path: str = ""  # the encoder's folder when it is not the default
    vae_path: str = ""  # where the autoencoder was when the set was built
    text_embeds_dim: int | None = None  # width of the captions' pooled "text_embeds" (SDXL); None: none

    @property
    def latent_scale(self) -> float:
        """What latents are multiplied by before diffusion (the SD "scaling factor")."""
        return self.declared_scale if self.declared_scale is not None else 1.0 / self.latent_std


def _tensor_name(name: str, bucket: Bucket) -> str:
    return f"{name}@{bucket.height}x{bucket.width}x{bucket.frames}"


def build_latent_set(manifests: list[Path], vae_folder: Path, out_file: Path, *, frames: int = 16, size: int = 64,
                     fps: float | None = None, text_encoder_path: Path | None = None, batch_size: int = 16,
                     device: str = "cpu", progress: Callable[[int], None] | None = None,
                     text_cache: Path | None = None, buckets: list[Bucket] | None = None,
                     text_length: int | None = None) -> Path:
    """Encode every clip of `manifests` with the autoencoder in `vae_folder` and write the set;
    `progress(done)` is called with the number of clips encoded so far. With `text_cache` (a
    `vidtool embed-text` file or folder) captions are looked up there instead of encoded. With
    `buckets` each clip is encoded at its bucket's shape (see the module docstring). `text_length`:
    tokens per caption (default: the text encoder's, 32; a text cache's own)."""
    from vidtool.autoencoders.apply import encode_frames
    from vidtool.autoencoders.tiling import default_tiling
    from vidtool.checkpoint import from_pretrained, model_tag
    from vidtool.tensorfile import TensorFile, save

    vae = from_pretrained(vae_folder, device=device).eval()

    def encode(items: list[dict], video) -> dict[str, torch.Tensor]:
        return {"latents": encode_frames(vae, video, default_tiling(vae), device).latents.half()}

    settings = build_settings("latents", manifests, vae_folder, frames=frames, size=size, fps=fps,
                              text_encoder_path=text_encoder_path, text_cache=text_cache, batch_size=batch_size,
                              buckets=buckets, text_length=text_length)
    encoded = encode_clip_set(manifests, encode, frames=frames, size=size, fps=fps,
                              text_encoder_path=text_encoder_path, batch_size=batch_size, device=device,
                              progress=progress, text_cache=text_cache, buckets=buckets, text_length=text_length,
                              out_file=out_file, settings=settings)
    if buckets is None:
        latents = encoded.tensors["latents"].float()
        info = LatentSetInfo(vae=model_tag(vae_folder), latent_std=float(latents.std()),
                             text_encoder=encoded.text_encoder, frames=frames, size=size)
    else:
        parts = [encoded.tensors[_tensor_name("latents", b)].float() for b in buckets
                 if _tensor_name("latents", b) in encoded.tensors]
        info = LatentSetInfo(vae=model_tag(vae_folder), latent_std=float(torch.cat([p.flatten() for p in parts]).std()),
                             text_encoder=encoded.text_encoder, frames=min(b.frames for b in buckets),
                             size=min(min(b.size) for b in buckets), buckets=[b.shape for b in buckets])
    info.declared_scale = getattr(vae, "scaling_factor", None)
    info.text_length = int(encoded.tensors["text"].shape[1])
    if "text_embeds" in encoded.tensors:
        info.text_embeds_dim = int(encoded.tensors["text_embeds"].shape[1])
    info.text_encoder_path = encoded.text_encoder_path
    info.vae_path = str(Path(vae_folder).resolve())
    tf = TensorFile(kind="dataset-shard", tensors=encoded.tensors, model=info.vae, params=info.__dict__)
    tf.set_prompts(encoded.prompts)
    tf.extra["model_path"] = str(Path(vae_folder).resolve())
    save(tf, out_file)
    encoded.kept.finish()
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
    tensors: dict[str, torch.Tensor]  # what `encode` returned, concatenated, plus text, text_mask, null_text,
    # null_mask (and text_embeds, null_text_embeds of an SDXL pipeline's encoders)
    prompts: list[str]
    text_encoder: str
    text_encoder_path: str = ""  # the encoder's folder when one was named (not a cache, not the default)
    kept: "PartialSet | None" = None  # the kept batches: finish() them once the set is written


def encode_clip_set(manifests: list[Path], encode: Callable[[list[dict], Any], dict[str, torch.Tensor]], *,
                    frames: int, size: int, fps: float | None, text_encoder_path: Path | None, batch_size: int,
                    device: str, progress: Callable[[int], None] | None,
                    text_cache: Path | None = None, buckets: list[Bucket] | None = None,
                    text_length: int | None = None, out_file: Path | None = None, settings: dict | None = None,
                    log: Callable[[str], None] | None = None) -> EncodedClips:
    """Read every clip of `manifests` once, in order, and return `encode(items, uint8 video [B,T,H,W,3])`
    for all of them with the captions' text embeddings (float16) and the empty prompt's. With
    `buckets`, clips are read bucket by bucket at its shape, each of `encode`'s tensors is kept per
    bucket ("NAME@HxWxT"), and "bucket" says which bucket each clip (in that order) went to. With
    `out_file`, each batch is kept beside it as it finishes and a rerun with the same `settings`
    resumes from the kept ones (vidtool.data.partial); the caller finishes `kept` once it has
    written the set."""
    from vidtool.data.clips import ClipDataset, ClipSets
    from vidtool.text_cache import text_encoder_or_cache

    text_encoder = text_encoder_or_cache(text_cache, text_encoder_path, device=device, max_length=text_length)
    clips = ClipSets([ClipDataset(m, frames=frames, fps=fps, size=size) for m in manifests])
    if buckets is None:
        groups = [(None, clips)]
    else:
        assignment = assign_buckets(clips.shapes(), buckets, fps)
        groups = [(b, _Reads(clips, [i for i, k in enumerate(assignment) if k == n], b)) for n, b in enumerate(buckets)]
        if not any(len(reads) for _, reads in groups):
            raise UserError(f"no clip fits any bucket of {','.join(map(str, buckets))}; add a smaller or shorter "
                            "bucket, or check the clips' sizes and lengths")
    kept = PartialSet(out_file, settings, log or _stderr) if out_file is not None else None
    resumed = kept.done() if kept is not None else 0
    if resumed:
        (log or _stderr)(f"resuming from {kept.folder.name}: {resumed} encoded batches of up to {batch_size} clips kept")
    parts: dict[str, list[torch.Tensor]] = {}
    prompts: list[str] = []
    number = 0  # batches in reading order over all groups: what the kept ones are numbered by
    with torch.inference_mode():
        for n, (bucket, reads) in enumerate(groups):
            for first in range(0, len(reads), batch_size):
                found = kept.load(number) if kept is not None else None
                if found is not None:
                    made, captions = found
                else:
                    items = [reads[i] for i in range(first, min(first + batch_size, len(reads)))]
                    video = torch.stack([item["video"] for item in items]).numpy()
                    captions = [item["caption"] for item in items]
                    embedded = text_encoder.encode(captions)
                    made = encode(items, video)
                    if bucket is not None:
                        made = {_tensor_name(name, bucket): tensor for name, tensor in made.items()}
                        made["bucket"] = torch.full((len(items),), n, dtype=torch.long)
                    made = {**made, "text": embedded.tokens.half().cpu(), "text_mask": embedded.mask.cpu()}
                    if embedded.text_embeds is not None:
                        made["text_embeds"] = embedded.text_embeds.half().cpu()
                    if kept is not None:
                        kept.save(number, made, captions)
                for name, tensor in made.items():
                    parts.setdefault(name, []).append(tensor)
                prompts.extend(captions)
                number += 1
                if progress:
                    progress(len(prompts))
        null = text_encoder.encode([""])
    tensors = {name: torch.cat(chunks) for name, chunks in parts.items()}
    tensors.update(null_text=null.tokens.half().cpu(), null_mask=null.mask.cpu())
    if null.text_embeds is not None:
        tensors["null_text_embeds"] = null.text_embeds.half().cpu()
    named = getattr(text_encoder, "model", None) is not None and text_encoder_path is not None
    return EncodedClips(tensors, prompts, text_encoder.name, str(text_encoder.path.resolve()) if named else "", kept)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def build_settings(kind: str, manifests: list[Path], model_folder: Path, **values) -> dict:
    """What a set's content depends on, for its kept batches (vidtool.data.partial): the builder,
    the manifests and the clip files they name, the model's tag, the text encoder or cache, and the
    builder's own `values` (frames, size, rate, buckets, batch size, ...)."""
    from vidtool.checkpoint import model_tag
    from vidtool.data.partial import file_fingerprint, manifests_fingerprint

    text = [values.pop(key, None) for key in ("text_encoder_path", "text_cache")]
    return {"kind": kind, "manifests": manifests_fingerprint(manifests), "model": model_tag(model_folder),
            "text": [file_fingerprint(Path(t)) if t is not None else None for t in text],
            **{key: [str(v) for v in value] if isinstance(value, list) else value for key, value in values.items()}}


class _Reads(torch.utils.data.Dataset):
    """The clips `indices` of `clips`, read at `bucket`'s shape."""

    def __init__(self, clips, indices: list[int], bucket: Bucket):
        self.clips, self.indices, self.bucket = clips, indices, bucket

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, j: int) -> dict:
        return self.clips.read(self.indices[j], self.bucket)


class LatentDataset(torch.utils.data.Dataset):
    """Items: dict(latents=float [C, T, h, w] times `latent_scale`, text, text_mask, null_text,
    null_mask, prompt; text_embeds and null_text_embeds when the set has them). The default collate
    stacks them (null_* gain a batch dimension)."""

    def __init__(self, path: str | Path, latent_scale: float | None = None):
        how = "`vidtool train-denoiser --data MANIFEST` or vidtool.data.latents.build_latent_set"
        tf = load_set(path, set(), "a latent set", how)
        self.path = Path(path)
        self.info = LatentSetInfo(**tf.params)
        self.info.text_length = int(tf["text"].shape[1])  # sets written before it was recorded have it too
        self.vae_path = tf.extra.get("model_path")
        self.info.vae_path = self.info.vae_path or self.vae_path or ""
        self.latent_scale = latent_scale if latent_scale is not None else self.info.latent_scale
        if self.info.buckets is None:
            if "latents" not in tf.tensors:
                raise UserError(f"{path} is not a latent set (missing ['latents']); build one with {how}")
            self.latents, self.bucket_of = tf["latents"], None
        else:
            # Each clip's row: its place among the clips of its bucket, which are stored in order.
            self.bucket_of = tf["bucket"].tolist()
            self.buckets = [_shape_bucket(shape) for shape in self.info.buckets]
            per_bucket = {n: tf.tensors.get(_tensor_name("latents", b)) for n, b in enumerate(self.buckets)}
            counts = [0] * len(self.buckets)
            self.latents = []
            for n in self.bucket_of:
                self.latents.append((per_bucket[n], counts[n]))
                counts[n] += 1
        self.text, self.text_mask = tf["text"], tf["text_mask"]
        self.null_text, self.null_mask = tf["null_text"][0].float(), tf["null_mask"][0]
        self.text_embeds = tf.tensors.get("text_embeds")
        if self.text_embeds is not None:
            self.null_text_embeds = tf["null_text_embeds"][0].float()
            self.info.text_embeds_dim = int(self.text_embeds.shape[1])
        self.prompts = tf.prompts()

    def __len__(self) -> int:
        return len(self.latents)

    def read(self, index: int, bucket: Bucket, image: bool = False) -> dict:
        """Item `index` of a bucketed set; `bucket` must be the one it was encoded at."""
        if image or self.bucket_of is None or self.buckets[self.bucket_of[index]].shape != bucket.shape:
            raise ValueError(f"item {index} of {self.path} is not in bucket {bucket.shape}{' as images' * image}")
        return self[index]

    def __getitem__(self, index: int) -> dict:
        if self.bucket_of is None:
            latents = self.latents[index]
        else:
            tensor, row = self.latents[index]
            latents = tensor[row]
        item = {
            "latents": latents.float() * self.latent_scale,
            "text": self.text[index].float(),
            "text_mask": self.text_mask[index],
            "null_text": self.null_text,
            "null_mask": self.null_mask,
            "prompt": self.prompts[index],
        }
        if self.text_embeds is not None:
            item.update(text_embeds=self.text_embeds[index].float(), null_text_embeds=self.null_text_embeds)
        return item


def _shape_bucket(shape: str) -> Bucket:
    """A bucket from its shape HxW:T (a latent set's batch sizes are chosen when training)."""
    size, frames = shape.split(":")
    height, width = size.split("x")
    return Bucket(int(height), int(width), int(frames), 1)
