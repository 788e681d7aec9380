"""The I/O side of `encode`, `tokenize` and `decode`: load the model, read input, write output."""

from __future__ import annotations

from pathlib import Path

MEDIA = {".mp4", ".gif", ".png"}


def encode_video(source: str, out: str, *, model: str | None, fps: float | None, size: int | None,
                 frames: int | None, chunk: int, role: str) -> None:
    import torch

    from stages.context import console, resolve_device
    from stages.media_input import read_video_input
    from vidtool import checkpoint, model_store, tensorfile
    from vidtool.autoencoders.apply import check_frame_size, encode_frames, fit_length
    from vidtool.autoencoders.tiling import Tiling
    from vidtool.errors import UserError

    folder = Path(model) if model else model_store.default_model(role)
    device = resolve_device()
    ae = checkpoint.from_pretrained(folder, device=device)
    if role == "tokenize" and not hasattr(ae, "tokenize"):
        raise UserError(f"{ae.family} is a continuous autoencoder and has no tokens; use `vidtool encode`, "
                        "or --model with an mbq-vae tokenizer")
    clip = read_video_input(source, fps=fps, size=size, frames=frames)
    check_frame_size(clip.frames, ae.spatial_factor, ae.family)
    padded, length = fit_length(clip.frames, ae.temporal_factor, ae.family)
    if padded.shape[1] != length:
        console().print(f"[yellow]padded {length} → {padded.shape[1]} frames (a multiple of the temporal factor "
                        f"{ae.temporal_factor}); decode trims them again[/]")
    with torch.inference_mode():
        encoded = encode_frames(ae, padded, Tiling(chunk=chunk), device)
    if role == "tokenize":
        kind, tensors = "tokens", {"tokens": encoded.tokens.to(torch.int32)}
    else:
        kind, tensors = "latents", {"latents": encoded.latents}
    params = {"frames": length, "height": int(clip.frames.shape[2]), "width": int(clip.frames.shape[3])}
    tensorfile.save(tensorfile.TensorFile(kind=kind, tensors=tensors, model=checkpoint.model_tag(folder), fps=clip.fps,
                                          prompt=clip.prompt, params=params, parents=[clip.parent],
                                          extra={"model_path": str(folder.resolve())}), out)


def decode_file(source: str, out: str, *, model: str | None, chunk: int, tile: int | None) -> None:
    import numpy as np
    import torch

    from stages.context import resolve_device
    from vidtool import checkpoint, model_store, tensorfile, video
    from vidtool.autoencoders.apply import decode_frames, latents_for
    from vidtool.autoencoders.tiling import Tiling
    from vidtool.errors import UserError

    tf = tensorfile.load(source, kinds=["latents", "keyframes", "tokens"])
    if tf.model is None:
        raise UserError(f"{source}: no 'vidtool.model' record, so the decoder is unknown; pass --model DIR")
    if model:
        folder = Path(model)
        if checkpoint.model_tag(folder) != tf.model:
            raise UserError(f"{source} was written by {tf.model}, but --model {folder} is {checkpoint.model_tag(folder)}; "
                            "decode with the model that encoded it")
    else:
        folder = model_store.find_by_tag(tf.model, hint=tf.extra.get("model_path"))
    device = resolve_device()
    ae = checkpoint.from_pretrained(folder, device=device)
    with torch.inference_mode():
        latents = latents_for(ae, tf.kind, tf.main)
        clip = np.concatenate(list(decode_frames(ae, latents, Tiling(chunk=chunk, tile=tile), device)), axis=1)
    clip = clip[:, : tf.params.get("frames", clip.shape[1])]
    fps = tf.fps or 8.0
    suffix = Path(out).suffix.lower() if out != "-" else ""
    if suffix in MEDIA:
        if clip.shape[0] == 1:
            video.write_video(out, clip[0], fps)
        else:
            for i, one in enumerate(clip):
                video.write_video(Path(out).with_name(f"{Path(out).stem}-{i}{suffix}"), one, fps)
        return
    decoded = tensorfile.TensorFile(kind="video", tensors={"video": torch.from_numpy(clip)}, model=tf.model, fps=fps,
                                    prompt=tf.prompt, seed=tf.seed, params=tf.params, parents=[tf.digest])
    prompts = tf.prompts()
    if prompts is not None:
        decoded.set_prompts(prompts)
    tensorfile.save(decoded, out)
