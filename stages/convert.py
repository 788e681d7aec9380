"""`vidtool convert`: media ⇄ video tensor files, and validated tensor-file copies."""

from __future__ import annotations

from pathlib import Path

import typer

from stages import coding_options as opt

app = typer.Typer(add_completion=False)

HELP = """Convert between media and video tensor files.

Input: an mp4/webm/mov/gif, a folder of PNG/JPG frames, or a tensor file (path or - for stdin).
Output (-o), by its extension: .mp4 or .mov (H.264, plays in a browser), .webm (VP9), .gif,
.png (contact sheet of the frames), .safetensors, or - / nothing for stdout. Media output needs a 'video' tensor file. Frames keep
their own size: --size N resizes the short side to N (aspect kept), --crop centre-crops.

Examples:

  vidtool convert clip.mp4 --fps 8 --size 64 --frames 16 -o clip.safetensors

  vidtool convert clip.mp4 --size 64 --crop 64 -o square.mp4

  vidtool convert clip.safetensors -o sheet.png

  cat clip.safetensors | vidtool convert - -o clip.gif"""


@app.command(help=HELP)
def convert(
    source: str = typer.Argument("-", help="Video, frame folder, tensor file, or - for stdin."),
    out: str = typer.Option("-", "--out", "-o", help="Output path (.mp4/.mov/.webm/.gif/.png/.safetensors) or - for stdout."),
    fps: float = typer.Option(None, min=0.1, max=240, help="Resample to this frame rate (media input)."),
    size: opt.Size = None,
    crop: opt.Crop = None,
    frames: int = typer.Option(None, min=1, help="Keep at most this many frames (media input)."),
) -> None:
    from stages.context import check_output
    from vidtool import outputs, tensorfile, video
    from vidtool.errors import UserError

    check_output(out, inputs=[source], suffixes=outputs.MEDIA + outputs.TENSOR)

    if _is_tensor_file(source):
        tf = tensorfile.load(source, kinds=None if not outputs.is_media(out) else ["video"])
        if any(v is not None for v in (fps, size, crop, frames)):
            raise UserError("--fps/--size/--crop/--frames apply to media input; a tensor file is copied as it is")
    else:
        import torch

        from stages.media_input import read_video_input

        clip = read_video_input(source, fps=fps, size=size, frames=frames, crop=crop)
        tf = tensorfile.TensorFile(kind="video", tensors={"video": torch.from_numpy(clip.frames)}, fps=clip.fps,
                                   params={"source": Path(source).name}, parents=[clip.parent])
    if outputs.is_media(out):
        batch = tf.main.numpy()
        if batch.shape[0] != 1:
            raise UserError(f"{source} holds {batch.shape[0]} videos; media output takes one (use `decode` to write a batch)")
        video.write_video(out, batch[0], tf.fps or 8.0)
    else:
        tensorfile.save(tf, out)


def _suffix(path: str) -> str:
    return Path(path).suffix.lower() if path != "-" else ""


def _is_tensor_file(source: str) -> bool:
    return source == "-" or _suffix(source) == ".safetensors"
