"""`vidtool inpaint`: sketch- and text-guided video inpainting (MotionAura §4)."""

from __future__ import annotations

from pathlib import Path

import typer

from stages import coding_options as opt

app = typer.Typer(add_completion=False)

HELP = """Repaint the masked region of a video from a sketch and a prompt (MotionAura's sketch-guided
inpainting: a frozen spectral transformer with LoRA adapters).

The mask marks where to paint: an .npz with a 'mask' array [T, H, W], a 'mask' tensor file, or one
image used for every frame (nonzero = paint). The sketch is an image of the object's outline
(dark strokes on white, or light on black), or an .npz holding a 'sketch' array. Only the region's
tokens are sampled; outside the mask the output is the input, byte for byte. The video keeps its
size unless --size (short side, aspect kept) or --crop says otherwise; the mask is fitted to it.

Examples:

  vidtool inpaint clip.mp4 --mask masks.npz --sketch square.png --prompt "a red square moving left" -o out.mp4

  vidtool inpaint clip.mp4 --mask hole.png --sketch circle.png --prompt "a blue circle" --seed 3 --steps 20 -o out.mp4

  vidtool inpaint clip.mp4 --size 64 --crop 64 --mask masks.npz --sketch square.png --prompt "a red square" -o out.mp4"""


@app.command("inpaint", help=HELP)
def inpaint(
    source: str = typer.Argument(..., help="Video file, frame folder, 'video' tensor file, or - for stdin."),
    mask: Path = typer.Option(..., help="Region to paint: .npz ('mask' [T, H, W]), 'mask' tensor file, or an image."),
    sketch: Path = typer.Option(..., help="Sketch of the object to paint: an image, or an .npz with 'sketch'."),
    prompt: str = typer.Option(..., help="What to paint, e.g. \"a red square moving left\"."),
    out: str = typer.Option("-", "--out", "-o", help="Output video (.mp4, .mov, .webm, .gif, .png sheet) or tensor file, - for stdout."),
    model: Path = typer.Option(None, "--model", "-m", help="Inpainting adapter folder (default: the bundled one)."),
    text_encoder: Path = typer.Option(None, help="Local transformers text-encoder folder, or an `embed-text` cache "
                                                 "holding the prompt (default: all-MiniLM-L6-v2)."),
    size: opt.Size = None,
    crop: opt.Crop = None,
    frames: int = typer.Option(None, min=1, help="Use at most this many frames (default: all)."),
    steps: int = typer.Option(None, min=1, max=1000, help="Masked-diffusion steps (default: the model's, 10)."),
    cfg: float = typer.Option(None, min=0, max=100, help="Classifier-free guidance on the prompt (default: the model's)."),
    temperature: float = typer.Option(None, min=0, max=100, help="Token sampling temperature (default: the model's, 0 = argmax)."),
    seed: int = typer.Option(0, min=0, max=2**63 - 1, help="Seed of the token draws (at most 64 bits, torch's generators)."),
) -> None:
    import time

    import torch

    from stages.context import check_output, console, progress_bar, resolve_device, resolve_dtype
    from stages.media_input import read_video_input
    from vidtool import checkpoint, model_store, outputs, tensorfile, video
    from vidtool.data.tokens import read_mask, read_sketch
    from vidtool.errors import UserError
    from vidtool.pipelines.motionaura import InpaintRequest, inpaint as run
    from vidtool.text_cache import text_encoder_or_cache

    started = time.monotonic()
    check_output(out, inputs=[source, mask, sketch], suffixes=outputs.MEDIA + outputs.TENSOR)
    if not prompt.strip():
        raise UserError("the prompt is empty; say what to paint, e.g. \"a red square moving left\"")
    if not sketch.is_file():
        raise UserError(f"no such sketch file: {sketch}")
    device = resolve_device()
    dtype = resolve_dtype(device)
    folder = model or model_store.default_model("inpaint")
    if checkpoint.read_config(folder)["family"] != "spectral-inpaint":
        raise UserError(f"{folder} is not a spectral-inpaint model; train one with "
                        "`vidtool train-denoiser --family spectral-inpaint --base SPECTRAL_DIR`")
    adapter = checkpoint.from_pretrained(folder, device=device, dtype=dtype)
    base = adapter.base.config
    tokenizer = checkpoint.from_pretrained(model_store.find_by_tag(base.tokenizer), device=device, dtype=dtype)
    encoder = text_encoder_or_cache(None, text_encoder, device=device, max_length=base.text_max_length, dtype=dtype)
    if encoder.dim != base.text_dim:
        raise UserError(f"{folder} was trained with {base.text_encoder} ({base.text_dim}-d tokens); pass that --text-encoder")
    clip = read_video_input(source, fps=None, size=size, frames=frames, crop=crop, multiple=tokenizer.spatial_factor)
    clip_frames = clip.frames[0]
    request = InpaintRequest(frames=clip_frames, mask=read_mask(mask, len(clip_frames), clip_frames.shape[1:3]),
                             strokes=read_sketch(sketch), prompt=prompt.strip())
    with progress_bar("inpainting", total=steps or base.sample_steps) as done:
        result = run(adapter, tokenizer, request, encoder, steps=steps, cfg=cfg, temperature=temperature, seed=seed,
                     device=device, progress=done).frames
    fps = clip.fps or base.fps
    if outputs.is_media(out):
        video.write_video(out, result, fps)
    else:
        tf = tensorfile.TensorFile(kind="video", tensors={"video": torch.from_numpy(result)[None]}, fps=fps,
                                   prompt=prompt.strip(), seed=seed, model=checkpoint.model_tag(folder),
                                   params={"steps": steps, "cfg": cfg, "temperature": temperature},
                                   parents=[clip.parent])
        tensorfile.save(tf, out)
    painted = float(request.mask.mean()) * 100
    console().print(f"[green]inpainted[/] {len(result)} frames, {painted:.1f}% of pixels repainted with "
                    f"{checkpoint.model_tag(folder)}, seed {seed}, {time.monotonic() - started:.1f} s "
                    f"→ {'stdout' if out == '-' else out}", soft_wrap=True)
