"""`train-denoiser`'s training set for a family: its latent, token or motion-latent set, read from
a cache file when it exists, else built from clip manifests with the family's data autoencoder
(the registry's `data_model` unless one is given) and cached there."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable, ContextManager

from vidtool.errors import UserError
from vidtool.families import Family

ProgressBar = Callable[[str, int | None], ContextManager[Callable[[int], None]]]


def _no_bar(description: str, total: int | None):
    return contextlib.nullcontext(lambda count: None)


def training_set(entry: Family, data: list[Path], path: Path, autoencoder: Path | None, *,
                 text_encoder: Path | None, frames: int, size: int, fps: float | None, device: str = "cpu",
                 progress_bar: ProgressBar = _no_bar, buckets=None, text_length: int | None = None):
    """The dataset `entry` trains on (cached at `path`); `autoencoder` (--vae/--tokenizer) must be
    the one that made an existing cache. `buckets` and `text_length` (tokens per caption; latent sets
    only) shape a new set; an existing one must have that text length."""
    from vidtool.checkpoint import shares_codes
    from vidtool.model_store import bundled

    what = {"latents": "latent set", "tokens": "token set", "motion": "motion-latent set"}[entry.trains_on]
    if not path.is_file():
        if not data:
            option = "--token-set" if entry.trains_on == "tokens" else "--latent-set"
            raise UserError(f"no {what} at {path}: pass --data MANIFEST to build it (or {option} FILE)")
        folder = autoencoder or bundled(entry.data_model)
        with progress_bar(f"encoding clips for the {what}", None) as done:
            _build(entry, list(data), folder, path, text_encoder=text_encoder, frames=frames, size=size, fps=fps,
                   device=device, progress=done, buckets=buckets, text_length=text_length)
    dataset = _open(entry, path)
    have = getattr(dataset.info, "text_length", None)
    if text_length is not None and have != text_length:
        raise UserError(f"{path} holds captions of {have} text tokens, not {text_length}; drop --text-length or pass "
                        "another --latent-set path to build a new set")
    made_by = getattr(dataset.info, "vae", None) or dataset.info.tokenizer
    if autoencoder is not None and not shares_codes(autoencoder, made_by):
        raise UserError(f"{path} was encoded by {made_by}, not by {autoencoder}; pass another "
                        f"{'--token-set' if entry.trains_on == 'tokens' else '--latent-set'} path to build a new one")
    return dataset


def _build(entry: Family, data: list[Path], folder: Path, path: Path, *, text_encoder, frames, size, fps, device,
           progress, buckets, text_length) -> None:
    if entry.trains_on == "tokens":
        from vidtool.data.manifest import read_manifest
        from vidtool.data.tokens import build_token_set

        # Clips with object masks also get the inpainting inputs, so that one token set serves the
        # generator and, later, its inpainting adapter.
        with_masks = entry.name == "spectral-inpaint" or all("mask" in r for m in data for r in read_manifest(m))
        build_token_set(data, folder, path, frames=frames, size=size, fps=fps, text_encoder_path=text_encoder,
                        inpainting=with_masks, device=device, progress=progress)
    elif entry.trains_on == "motion":
        from vidtool.data.motion_latents import build_motion_set

        build_motion_set(data, folder, path, size=size, fps=fps, text_encoder_path=text_encoder, device=device,
                         progress=progress)
    else:
        from vidtool.data.latents import build_latent_set

        build_latent_set(data, folder, path, frames=frames, size=size, fps=fps, text_encoder_path=text_encoder,
                         device=device, progress=progress, buckets=buckets, text_length=text_length)


def _open(entry: Family, path: Path):
    if entry.trains_on == "tokens":
        from vidtool.data.tokens import TokenDataset

        return TokenDataset(path, inpainting=entry.name == "spectral-inpaint")
    if entry.trains_on == "motion":
        from vidtool.data.motion_latents import MotionLatentDataset

        return MotionLatentDataset(path)
    from vidtool.data.latents import LatentDataset

    return LatentDataset(path)
