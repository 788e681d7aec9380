"""`vidtool tokenize`: video → discrete token ids with a quantized tokenizer (mbq-vae)."""

from __future__ import annotations

import typer

app = typer.Typer(add_completion=False)

HELP = """Turn a video into token ids with a quantized video tokenizer (3D-MBQ-VAE).

Input: mp4/webm/mov/gif, a folder of frames, or a 'video' tensor file (path or - for stdin).
Output: a 'tokens' tensor file [B, t, h, w] that `vidtool decode` turns back into video.

Examples:

  vidtool tokenize in.mp4 -o tokens.safetensors

  vidtool tokenize in.mp4 | vidtool decode -o rec.mp4"""


@app.command("tokenize", help=HELP)
def tokenize(
    source: str = typer.Argument("-", help="Video file, frame folder, 'video' tensor file, or - for stdin."),
    out: str = typer.Option("-", "--out", "-o", help="Output tensor file, or - for stdout."),
    model: str = typer.Option(None, "--model", "-m", help="Tokenizer folder; default: the bundled mbq-vae."),
    fps: float = typer.Option(None, min=0.1, max=240, help="Resample the input to this frame rate."),
    size: int = typer.Option(None, min=8, max=4096, help="Resize the short side and center-crop to a square."),
    frames: int = typer.Option(None, min=1, help="Use at most this many frames."),
    chunk: int = typer.Option(4, min=1, help="Latent frames per temporal chunk (memory vs speed)."),
) -> None:
    from stages.autoencode import encode_video

    encode_video(source, out, model=model, fps=fps, size=size, frames=frames, chunk=chunk, role="tokenize")
