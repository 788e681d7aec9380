"""`vidtool decode`: latents or tokens → video, with the decoder that wrote them."""

from __future__ import annotations

import typer

from stages import coding_options as opt

app = typer.Typer(add_completion=False)

HELP = """Decode latents or token ids back into video.

The decoder is found from the input's 'vidtool.model' record (bundled models and folders on
$VIDTOOL_MODELS are searched); --model names one explicitly and is refused if it is not the one
that wrote the input. Output: .mp4 (H.264), .gif, .png (contact sheet), .safetensors or - (a
'video' tensor file). A batch written to media gives NAME-0.mp4, NAME-1.mp4, ...

Examples:

  vidtool decode z.safetensors -o out.mp4

  vidtool encode in.mp4 | vidtool decode -o rec.mp4

  vidtool decode tokens.safetensors --tile 16 -o out.gif

LaMD 'motion' files (generate --family lamd, or encode --family mcd-vae) hold a motion latent and
the image it starts from; --content renders the same motion on another image:

  vidtool encode b.mp4 --family mcd-vae | vidtool decode --content a.png -o a-moving-like-b.mp4"""


@app.command("decode", help=HELP)
def decode(
    source: str = typer.Argument("-", help="A 'latents', 'tokens' or 'motion' tensor file, or - for stdin."),
    out: str = typer.Option("-", "--out", "-o", help="Output .mp4/.gif/.png/.safetensors, or - for stdout."),
    model: str = typer.Option(None, "--model", "-m", help="Decoder folder (must match the input's model)."),
    chunk: opt.Chunk = None,
    context: opt.Context = None,
    tile: int = typer.Option(None, min=2, help="Latent tile edge for spatial tiling of large frames."),
    content: str = typer.Option(None, help="LaMD motion only: render the motion on this image instead of the file's "
                                           "own (motion transfer)."),
    max_memory: str = typer.Option(None, "--max-memory", help="Memory budget (e.g. 6G, 512M, or auto = from the "
                                                              "device): picks --chunk/--tile sizes that fit under it."),
) -> None:
    from stages.autoencode import decode_file

    decode_file(source, out, model=model, chunk=chunk, tile=tile, content=content, max_memory=max_memory,
                context=context)
