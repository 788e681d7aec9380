"""Options `encode`, `tokenize` and `decode` share: how time is cut into chunks. One declaration
each, so the three stages read the same."""

from __future__ import annotations

from typing import Annotated

import typer

Chunk = Annotated[int, typer.Option(min=1, help="Latent frames per temporal chunk (memory vs speed; default 4, "
                                                "or the model's window).")]
Context = Annotated[int, typer.Option(min=0, help="Latent frames of context each chunk also computes, then drops "
                                                  "(default 4; 0 for a model with a window: independent windows "
                                                  "of --chunk).")]
