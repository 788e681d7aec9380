"""Build a generator to train: family + preset + KEY=VALUE overrides, on top of a frozen base.

Each family's module provides `build(preset, overrides, base, data)`: `base` is the loaded T2I model
folder the video families freeze and extend (None for `t2i` itself), `data` the latent set's
`LatentSetInfo` (latent scale, VAE tag, clip geometry).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from vidtool.errors import UserError

# family -> module with build(); families added by later work register here.
BUILDERS: dict[str, str] = {
    "t2i": "vidtool.generators.t2i",
    "harivo": "vidtool.generators.harivo",
    "keyframes": "vidtool.generators.keyframes",
    "interp": "vidtool.generators.interpolation",
    "interp-mfi": "vidtool.generators.masked_interpolation",
}
# Families that extend a frozen text-to-image model (train-denoiser --base DIR).
NEEDS_BASE = {"keyframes", "interp", "interp-mfi", "harivo"}


def build_generator(family: str, preset: str, overrides: list[str], base: Path | None, data: Any):
    """`overrides` are `--set KEY=VALUE` strings, checked against the family's config fields."""
    from vidtool.autoencoders.build import parse_overrides
    from vidtool.checkpoint import model_class

    if family not in BUILDERS:
        raise UserError(f"unknown generator family {family!r}; known: {', '.join(sorted(BUILDERS))}")
    if family in NEEDS_BASE and base is None:
        raise UserError(f"{family} extends a trained text-to-image model: pass --base DIR (a t2i model folder)")
    base_model = None
    if base is not None:
        from vidtool.checkpoint import from_pretrained, read_config

        if read_config(base)["family"] != "t2i":
            raise UserError(f"--base {base} is a {read_config(base)['family']} model; it must be a t2i folder")
        base_model = from_pretrained(base)
    module = importlib.import_module(BUILDERS[family])
    values = parse_overrides(overrides, model_class(family).config_class)
    try:
        return module.build(preset, values, base_model, data)
    except (TypeError, ValueError) as e:
        raise UserError(f"cannot build {family} preset {preset!r} with {overrides}: {e}") from e
