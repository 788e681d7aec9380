"""`vidtool tokenize`: video → discrete token ids with a quantized tokenizer (mbq-vae)."""

from __future__ import annotations

import typer

from stages.encode import encoder_command

app = typer.Typer(add_completion=False)

HELP = """Turn a video into token ids with a quantized video tokenizer (3D-MBQ-VAE).

Input: mp4/webm/mov/gif, a folder of frames, or a 'video' tensor file (path or - for stdin).
Output: a 'tokens' tensor file [B, t, h, w] that `vidtool decode` turns back into video at the
input's own length and size (padding up to the tokenizer's factors is trimmed again). --size N
resizes the short side to N with the aspect kept; --crop centre-crops only when asked.

Examples:

  vidtool tokenize in.mp4 -o tokens.safetensors

  vidtool tokenize in.mp4 | vidtool decode -o rec.mp4

  vidtool tokenize in.mp4 --size 64 --crop 64x96 | vidtool decode -o rec.mp4

A whole data set: --manifest M.jsonl --out-dir DIR writes DIR/<clip>.tokens.safetensors per clip
and DIR/manifest.jsonl listing them (failed clips in DIR/manifest.errors.jsonl). With --shard I/N
(or in a SLURM job array) it does shard I only and writes DIR/tokenize-shard-I-of-N.jsonl; join
the shards with `vidtool merge-shards DIR`. A rerun skips the clips already done.

  vidtool tokenize --manifest data/shapes/manifest.jsonl --out-dir tokens/ --shard 0/4

  vidtool merge-shards tokens/"""


app.command("tokenize", help=HELP)(encoder_command("tokenize", "Tokenizer folder; default: the bundled mbq-vae-tiny."))
