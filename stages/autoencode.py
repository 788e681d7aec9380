"""The I/O side of `encode`, `tokenize` and `decode`: load the model, read input, write output."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

MEDIA = {".mp4", ".gif", ".png"}


def encode_video(source: str, out: str, *, model: str | None, fps: float | None, size: int | None,
                 frames: int | None, chunk: int | None, role: str, max_memory: str | None = None,
                 context: int | None = None, crop: str | None = None) -> None:
    import time

    from stages.context import clip_summary, console, say_written
    from stages.media_input import read_video_input
    from vidtool import tensorfile

    started = time.monotonic()
    encoder = load_encoder(model, role)
    clip = read_video_input(source, fps=fps, size=size, frames=frames, crop=crop, multiple=encoder.ae.spatial_factor,
                            max_memory=max_memory)

    def padded(note: str) -> None:
        console().print(f"[yellow]{note}; decode trims them again[/]", soft_wrap=True)

    tf = encoder.encode(clip, chunk, on_pad=padded, max_memory=max_memory, context=context)
    tensorfile.save(tf, out)
    b, t, h, w = clip.frames.shape[:4]
    say_written(out, f"{tf.kind} {'×'.join(map(str, tf.main.shape))} of {clip_summary(t, h, w, clip.fps, count=b)}, "
                     f"with {tf.model}", started)


@dataclass
class LoadedEncoder:
    """An autoencoder loaded once for many clips (`encode`/`tokenize`, also over a whole manifest)."""

    ae: Any
    folder: Path
    device: str
    role: str  # "encode" → latents, "tokenize" → token ids

    @property
    def kind(self) -> str:
        return "tokens" if self.role == "tokenize" else "latents"

    def encode(self, clip, chunk: int | None, on_pad: Callable[[str], None] | None = None,
               max_memory: str | None = None, context: int | None = None):
        """A `VideoInput` → the `latents`/`tokens` TensorFile the stage writes, in temporal chunks of
        `chunk` latent frames with `context` latent frames of context on each side (None: the
        model's `default_tiling`). Frames are padded up to the model's factors (`on_pad` hears what
        was padded); the params record the clip's own length and size for decode. With `max_memory`
        (a size or 'auto') the chunk is planned to fit it; out of memory retries once, smaller."""
        import torch

        from vidtool import checkpoint, tensorfile
        from vidtool.autoencoders.apply import encode_frames, fit_length, fit_size
        from vidtool.memory import with_retry
        from vidtool.autoencoders.tiling import default_tiling

        if self.ae.family == "mcd-vae":  # LaMD: a motion latent + the first frame
            return self._encode_motion(clip)
        padded, length = fit_length(clip.frames, self.ae.temporal_factor, self.ae.family)
        padded, (height, width) = fit_size(padded, self.ae.spatial_factor)
        _, t, h, w, _ = padded.shape
        if on_pad is not None and t != length:
            on_pad(f"padded {length} → {t} frames (a multiple of the temporal factor {self.ae.temporal_factor})")
        if on_pad is not None and (h, w) != (height, width):
            on_pad(f"padded {height}×{width} → {h}×{w} pixels (multiples of the spatial factor "
                   f"{self.ae.spatial_factor})")
        shape = (padded.shape[0], t // self.ae.temporal_factor, h // self.ae.spatial_factor, w // self.ae.spatial_factor)
        start = default_tiling(self.ae, chunk, context, frame_pixels=h * w, encode=True)
        tiling = planned_tiling(self.ae, shape, start, max_memory, self.device, spatial=False)
        with torch.inference_mode():
            encoded = with_retry(lambda t: encode_frames(self.ae, padded, t, self.device), tiling, *shape[2:],
                                 spatial=False, what=self.role)
        if self.role == "tokenize":
            tensors = {"tokens": encoded.tokens.to(torch.int32)}
        else:
            tensors = {"latents": encoded.latents}
        params = {"frames": length, "height": height, "width": width}
        return tensorfile.TensorFile(kind=self.kind, tensors=tensors, model=checkpoint.model_tag(self.folder), fps=clip.fps,
                                     prompt=clip.prompt, params=params, parents=[clip.parent],
                                     extra={"model_path": str(self.folder.resolve())})


    def _encode_motion(self, clip):
        """The first L frames of each clip → a `motion` file: z_m (the posterior mean) and frame 0."""
        import torch

        from stages.context import console
        from vidtool import checkpoint, tensorfile
        from vidtool.autoencoders.apply import fit_size
        from vidtool.errors import UserError
        from vidtool.pipelines.lamd import encode_motion

        length = self.ae.frames
        if clip.frames.shape[1] < length:
            raise UserError(f"the clip has {clip.frames.shape[1]} frames; this mcd-vae encodes L = {length} (r_t = L): "
                            "pass a longer clip or a lower --fps")
        if clip.frames.shape[1] > length:
            console().print(f"[yellow]using the first {length} of {clip.frames.shape[1]} frames (L = {length})[/]")
        padded, (height, width) = fit_size(clip.frames[:, :length], self.ae.spatial_factor)
        with torch.inference_mode():
            motion = encode_motion(self.ae, torch.from_numpy(padded.copy()))
        params = {"frames": length, "height": height, "width": width}
        return tensorfile.TensorFile(kind="motion", tensors={"motion": motion.motion, "content": motion.content},
                                     model=checkpoint.model_tag(self.folder), fps=clip.fps, prompt=clip.prompt,
                                     params=params, parents=[clip.parent],
                                     extra={"model_path": str(Path(self.folder).resolve())})


def load_encoder(model: str | None, role: str) -> LoadedEncoder:
    from stages.context import compile_if_asked, resolve_device, resolve_dtype
    from vidtool import checkpoint, model_store
    from vidtool.errors import UserError

    folder = Path(model) if model else model_store.default_model(role)
    device = resolve_device()
    ae = checkpoint.from_pretrained(folder, device=device, dtype=resolve_dtype(device))
    compile_if_asked(ae, "encode", device)
    if role == "tokenize" and not hasattr(ae, "tokenize"):
        raise UserError(f"{ae.family} is a continuous autoencoder and has no tokens; use `vidtool encode`, "
                        "or --model with an mbq-vae tokenizer")
    return LoadedEncoder(ae, folder, device, role)


def planned_tiling(ae, shape: tuple[int, int, int, int], start, max_memory: str | None, device: str, *, spatial: bool):
    """`start`, or with `max_memory` (a size or 'auto') the largest tiling under it that `start` bounds;
    `shape` is (batch, latent frames, latent height, latent width)."""
    if max_memory is None:
        return start
    from stages.context import console
    from vidtool.memory import device_budget, parse_memory, plan

    budget = parse_memory(max_memory) or device_budget(device)
    tiling = plan(ae, *shape, budget, spatial=spatial, start=start)
    message = (f"memory plan for {budget / 2**30:.2f} GiB: chunk {tiling.chunk} latent frames, "
               f"tile {tiling.tile or 'whole frames'}")
    if message not in _ANNOUNCED:  # once per plan, not once per clip of a manifest
        _ANNOUNCED.add(message)
        console().print(message)
    return tiling


_ANNOUNCED: set[str] = set()
