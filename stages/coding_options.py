"""Options the stages that code video share: how time is cut into chunks (`encode`, `tokenize`,
`decode`) and how media input is sized (`encode`, `tokenize`, `convert`, `inpaint`). One declaration
each, so the stages read the same."""

from __future__ import annotations

from typing import Annotated

import typer

Chunk = Annotated[int, typer.Option(min=1, help="Latent frames per temporal chunk (memory vs speed; default 4, "
                                                "or the model's window).")]
Context = Annotated[int, typer.Option(min=0, help="Latent frames of context each chunk also computes, then drops "
                                                  "(default 4; 0 for a model with a window: independent windows "
                                                  "of --chunk).")]
Size = Annotated[int, typer.Option(min=8, max=4096, help="Resize the short side to this many pixels, aspect kept "
                                                         "(default: the input's own size).")]
Crop = Annotated[str, typer.Option(help="Centre-crop to N×N or HxW pixels (e.g. 64 or 48x80), after any --size.")]
