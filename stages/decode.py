"""`vidtool decode`: latents or tokens → video, with the decoder that wrote them."""

from __future__ import annotations

from pathlib import Path

import typer

from stages import coding_options as opt

app = typer.Typer(add_completion=False)

HELP = """Decode latents or token ids back into video, at the length and size the encoder was given (the
padding up to the model's factors is trimmed), or for generated latents the size they were
generated at (generate --height/--width).

The decoder is found from the input's 'vidtool.model' record (bundled models and folders on
$VIDTOOL_MODELS are searched); --model names one explicitly and is refused if it is not the one
that wrote the input. Output, by its extension: .mp4 or .mov (H.264), .webm (VP9), .gif, .png (contact sheet),
.safetensors or - (a 'video' tensor file). A batch written to media gives NAME-0.mp4, NAME-1.mp4, ...

Examples:

  vidtool decode z.safetensors -o out.mp4

  vidtool encode in.mp4 | vidtool decode -o rec.mp4

  vidtool decode tokens.safetensors --tile 16 -o out.gif

  vidtool decode z.safetensors --max-memory 6G --dtype bf16 --compile -o out.mp4

LaMD 'motion' files (generate --family lamd, or encode --family mcd-vae) hold a motion latent and
the image it starts from; --content renders the same motion on another image:

  vidtool encode b.mp4 --family mcd-vae | vidtool decode --content a.png -o a-moving-like-b.mp4"""


@app.command("decode", help=HELP)
def decode(
    source: str = typer.Argument("-", help="A 'latents', 'tokens' or 'motion' tensor file, or - for stdin."),
    out: str = typer.Option("-", "--out", "-o", help="Output .mp4/.mov/.webm/.gif/.png/.safetensors, or - for stdout."),
    model: str = typer.Option(None, "--model", "-m", help="Decoder folder (must match the input's model)."),
    chunk: opt.Chunk = None,
    context: opt.Context = None,
    tile: int = typer.Option(None, min=2, help="Latent tile edge for spatial tiling of large frames."),
    content: str = typer.Option(None, help="LaMD motion only: render the motion on this image instead of the file's "
                                           "own (motion transfer)."),
    max_memory: str = typer.Option(None, "--max-memory", help="Memory budget (e.g. 6G, 512M, or auto = from the "
                                                              "device): picks --chunk/--tile sizes that fit under it."),
) -> None:
    from stages.context import check_output
    from vidtool import outputs

    check_output(out, inputs=[source, content], suffixes=outputs.MEDIA + outputs.TENSOR)
    decode_file(source, out, model=model, chunk=chunk, tile=tile, content=content, max_memory=max_memory,
                context=context)


def decode_file(source: str, out: str, *, model: str | None, chunk: int | None, tile: int | None,
                content: str | None = None, max_memory: str | None = None, context: int | None = None) -> None:
    import time

    import torch

    from stages.context import clip_summary, compile_if_asked, resolve_device, resolve_dtype, say_written
    from vidtool import checkpoint, model_store, outputs, tensorfile, video
    from vidtool.errors import UserError

    tf = tensorfile.load(source, kinds=["latents", "keyframes", "tokens", "motion"])
    started = time.monotonic()  # after the input is in: in a pipe, not the stages before it
    if content is not None and tf.kind != "motion":
        raise UserError(f"--content renders LaMD motion on an image; {source} holds {tf.kind}, not motion")
    if tf.model is None:
        raise UserError(f"{source}: no 'vidtool.model' record, so the decoder is unknown; pass --model DIR")
    if model:
        folder = Path(model)
        if not checkpoint.shares_codes(folder, tf.model):
            raise UserError(f"{source} was written by {tf.model}, but --model {folder} is {checkpoint.model_tag(folder)}; "
                            "decode with the model that encoded it")
    else:
        folder = model_store.find_by_tag(tf.model, hint=tf.extra.get("model_path"))
    model_store.check_decoder(folder, tf.kind, source)
    frames, height, width = (tf.size_param(key) for key in ("frames", "height", "width"))
    device = resolve_device()
    ae = checkpoint.from_pretrained(folder, device=device, dtype=resolve_dtype(device))
    compile_if_asked(ae, "decode", device)
    if tf.kind == "motion":  # LaMD: z_m on its own first frame, or on --content (motion transfer)
        clip = _render_motion(tf, ae, content)
    else:
        clip = decode_tensor(ae, tf.kind, tf.main, device=device, chunk=chunk, context=context, tile=tile,
                             max_memory=max_memory)
    # encode pads a clip up to the model's factors and records its own length and size: trim back to them.
    clip = clip[:, :frames, :height, :width]
    fps = tf.fps or 8.0
    what = clip_summary(clip.shape[1], clip.shape[2], clip.shape[3], fps, count=clip.shape[0])
    if outputs.is_media(out):  # a batch: NAME-0.mp4, NAME-1.mp4, ...
        names = [Path(out).with_name(f"{Path(out).stem}-{i}{outputs.suffix(out)}") for i in range(len(clip))]
        for name, one in zip([out] if len(clip) == 1 else names, clip):
            video.write_video(name, one, fps)
        say_written(out if len(clip) == 1 else f"{names[0]} … {names[-1].name}", what, started)
        return
    decoded = tensorfile.TensorFile(kind="video", tensors={"video": torch.from_numpy(clip)}, model=tf.model, fps=fps,
                                    prompt=tf.prompt, seed=tf.seed, params=tf.params, parents=[tf.digest])
    prompts = tf.prompts()
    if prompts is not None:
        decoded.set_prompts(prompts)
    tensorfile.save(decoded, out)
    say_written(out, f"a 'video' tensor file, {what}", started)


def decode_tensor(ae, kind: str, tensor, *, device: str, chunk: int | None = None, context: int | None = None,
                  tile: int | None = None, max_memory: str | None = None):
    """`latents`/`keyframes`/`tokens` [B, …] → uint8 [B, T, H, W, 3], streamed chunk by chunk as the
    stage decodes (benchmarks/codec_throughput.py times this path against the bare network)."""
    import numpy as np
    import torch

    from stages.autoencode import planned_tiling
    from vidtool.autoencoders.apply import decode_frames, latents_for
    from vidtool.autoencoders.tiling import default_tiling
    from vidtool.memory import with_retry

    with torch.inference_mode():
        latents = latents_for(ae, kind, tensor)
        b, _, t, h, w = latents.shape
        start = default_tiling(ae, chunk, context, tile, frame_pixels=h * w * ae.spatial_factor**2)
        tiling = planned_tiling(ae, (b, t, h, w), start, max_memory, device, spatial=True)
        return with_retry(lambda tl: np.concatenate(list(decode_frames(ae, latents, tl, device)), axis=1),
                          tiling, h, w, spatial=True, what="decode")


def _render_motion(tf, vae, content: str | None):
    import torch

    from vidtool.errors import UserError
    from vidtool.pipelines.lamd import render
    from vidtool.video import read_image

    z_m = tf["motion"]
    if content is not None:
        size = tuple(side * vae.spatial_factor for side in z_m.shape[-2:])  # render checks z_m is [B, d, h, w]
        pixels = torch.from_numpy(read_image(Path(content), size)).expand(z_m.shape[0], -1, -1, -1)
    elif "content" in tf.tensors:
        pixels = tf["content"]
    else:
        raise UserError("this motion file holds no content image; pass --content IMAGE")
    with torch.inference_mode():
        return render(vae, z_m, pixels).frames
