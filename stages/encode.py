"""`vidtool encode`: video → latents with a video autoencoder."""

from __future__ import annotations

import typer

app = typer.Typer(add_completion=False)

HELP = """Encode a video into latents with a video autoencoder.

Input: mp4/webm/mov/gif, a folder of frames, or a 'video' tensor file (path or - for stdin).
Output: a 'latents' tensor file that records the model, so `vidtool decode` finds the decoder.
A clip whose length is not a multiple of the model's temporal factor is padded with its last
frame (and trimmed again by decode); a clip shorter than that factor is refused.

Examples:

  vidtool encode in.mp4 -o z.safetensors

  vidtool encode in.mp4 | vidtool decode -o rec.mp4

  vidtool encode in.mp4 --model runs/cm-vae --fps 8 --size 64 -o z.safetensors"""


def encoder_command(role: str, model_help: str):
    """The shared options of `encode` and `tokenize`; `role` picks the output kind and default model."""

    def command(
        source: str = typer.Argument("-", help="Video file, frame folder, 'video' tensor file, or - for stdin."),
        out: str = typer.Option("-", "--out", "-o", help="Output tensor file, or - for stdout."),
        model: str = typer.Option(None, "--model", "-m", help=model_help),
        fps: float = typer.Option(None, min=0.1, max=240, help="Resample the input to this frame rate."),
        size: int = typer.Option(None, min=8, max=4096, help="Resize the short side and center-crop to a square."),
        frames: int = typer.Option(None, min=1, help="Use at most this many frames."),
        chunk: int = typer.Option(4, min=1, help="Latent frames per temporal chunk (memory vs speed)."),
    ) -> None:
        from stages.autoencode import encode_video

        encode_video(source, out, model=model, fps=fps, size=size, frames=frames, chunk=chunk, role=role)

    return command


app.command("encode", help=HELP)(encoder_command("encode", "Model folder; default: the bundled cm-vae."))
