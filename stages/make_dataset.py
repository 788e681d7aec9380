"""`vidtool make-dataset`: the offline data sets the bundled defaults are trained on."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

app = typer.Typer(add_completion=False)


class Kind(str, Enum):
    shapes = "shapes"
    photos = "photos"
    scenes = "scenes"


class Format(str, Enum):
    mp4 = "mp4"
    gif = "gif"
    png = "png"


HELP = """Build an offline training set ('shapes', 'photos' or 'scenes'): clips + manifest.jsonl.

'shapes': coloured shapes moving on a plain or textured background, captioned "a {color} {shape}
moving {direction}" ("an orange ..."), with per-frame masks and edge sketches. Four (color, shape, direction)
combinations are held out by default (see --held-out-only). 'photos': pans, zooms and rotations
over the photographs scikit-image ships. 'scenes': footage-like clips for autoencoders: a moving
camera over a photo or texture with up to three independently moving, occluding layers, lighting
changes and sensor noise; --held-out-only shows only the pictures training never uses (astronaut,
coffee, camera). Deterministic by --seed; a rerun skips clips that exist.

Examples:

  vidtool make-dataset shapes -n 1000 -o data/shapes

  vidtool make-dataset shapes -n 200 --seed 7 --held-out-only -o data/shapes-heldout

  vidtool make-dataset photos -n 200 -o data/photos

  vidtool make-dataset scenes -n 2000 -o data/scenes"""


@app.command(help=HELP)
def make_dataset(
    kind: Kind = typer.Argument(..., help="Which data set to build."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (clips/ and manifest.jsonl)."),
    n: int = typer.Option(1000, "-n", "--count", min=1, help="Number of clips."),
    frames: int = typer.Option(16, min=1, help="Frames per clip."),
    size: int = typer.Option(64, min=16, max=1024, help="Square frame size in pixels."),
    fps: int = typer.Option(8, min=1, max=120, help="Frames per second recorded in the clips."),
    seed: int = typer.Option(0, min=0, max=2**63 - 1, help="Generator seed; clip i is a function of (seed, i)."),
    held_out_only: bool = typer.Option(False, "--held-out-only", help="shapes: only the held-out combinations; scenes: only the held-out pictures (for evaluation)."),
    fmt: Format = typer.Option(Format.mp4, "--format", help="mp4 (H.264), gif, or png (lossless frame folders)."),
) -> None:
    from stages.context import console, progress_bar
    from vidtool.data.make import make_dataset as build

    with progress_bar(f"make-dataset {kind.value}", n) as done:
        manifest = build(kind.value, out, n, frames=frames, size=size, fps=fps, seed=seed,
                         only_held_out=held_out_only, fmt=fmt.value, progress=lambda count, total: done(count))
    console().print(f"wrote {n} {kind.value} clips; manifest: {manifest}")
