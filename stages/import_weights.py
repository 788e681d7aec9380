"""`vidtool import-weights`: released checkpoints -> folders vidtool loads (vidtool.import_weights)."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(add_completion=False)

HELP = """Convert a released checkpoint into a folder vidtool loads. Nothing is downloaded.

--family sd: a single-file Stable Diffusion checkpoint (.safetensors or .ckpt, original CompVis/ldm
keys: model.diffusion_model.*, first_stage_model.*, cond_stage_model.*) -> a diffusers pipeline
folder (unet/, vae/, text_encoder/, tokenizer/, scheduler/) for --base, --vae and decode --model.
diffusers' own converters do the work; --config-dir names a local pipeline folder of the same SD
version (1.x, 2.x) whose configs, tokenizer and scheduler are used. A part missing from the file
is copied from --config-dir (said on stderr).

--family movq: KandinskyVideo's MoVQ (movq.pt; video_movq.pt with its 3x1x1 or 3x3x3 temporal
convs and temporal attention) -> a movq-temporal folder, tensor for tensor (the release's blended
temporal convs are folded into vidtool's residual ones: the same function). The release has no
codebook (it decodes continuous latents) while movq-temporal encodes to tokens: --codebook FILE
gives one (a Kandinsky MoVQ checkpoint holding quantize.embedding.weight). Decoding equals the
release frame by frame; the release's spatial-attention norms condition every frame of a batch on
the first frame's codes, vidtool's each frame on its own. Refused: add_conv norms, temporal ResNet
blocks, flicker projections, 3D-conv decoders.

--family keyframes / interp: KandinskyVideo's t2v.pt / interpolation.pt are refused: they hold
Kandinsky 3's own U-Net with temporal blocks built in, vidtool's families a diffusers Kandinsky3UNet
with temporal layers of their own; train those on a Kandinsky 3 pipeline folder (--base DIR).

Pickles are read only with torch.load(weights_only=True): one that needs code to load is refused.

Examples:

  vidtool import-weights v1-5-pruned-emaonly.safetensors --family sd --config-dir models/sd15 -o models/my-sd

  vidtool import-weights movq.pt --family movq --codebook kandinsky3-movq.pt -o models/kandinsky-movq"""


@app.command(help=HELP)
def import_weights(
    source: Path = typer.Argument(..., help="The released checkpoint (.safetensors, .ckpt, .pt)."),
    out: Path = typer.Option(..., "--out", "-o", help="The folder to create (must not exist)."),
    family: str = typer.Option(..., help="sd, movq, keyframes or interp."),
    config: Path = typer.Option(None, "--config-dir", help="--family sd: a local diffusers SD pipeline folder with the configs."),
    codebook: Path = typer.Option(None, help="--family movq: a checkpoint holding quantize.embedding.weight."),
) -> None:
    from stages.context import console, progress_bar
    from vidtool.import_weights import import_weights as run
    from vidtool.import_weights import steps

    say = console().print
    with progress_bar(f"importing {source.name}", total=steps(family), unit="steps") as done:
        folder = run(source, out, family, config=config, codebook=codebook, say=lambda m: say(m, soft_wrap=True),
                     done=done)
    say(f"wrote {folder}", soft_wrap=True)
