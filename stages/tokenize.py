"""`vidtool tokenize`: video → discrete token ids with a quantized tokenizer (mbq-vae)."""

from __future__ import annotations

import typer

from stages.encode import encoder_command

app = typer.Typer(add_completion=False)

HELP = """Turn a video into token ids with a quantized video tokenizer (3D-MBQ-VAE).

Input: mp4/webm/mov/gif, a folder of frames, or a 'video' tensor file (path or - for stdin).
Output: a 'tokens' tensor file [B, t, h, w] that `vidtool decode` turns back into video.

Examples:

  vidtool tokenize in.mp4 -o tokens.safetensors

  vidtool tokenize in.mp4 | vidtool decode -o rec.mp4"""


app.command("tokenize", help=HELP)(encoder_command("tokenize", "Tokenizer folder; default: the bundled mbq-vae."))
