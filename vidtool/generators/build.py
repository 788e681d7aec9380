"""Build a generator to train: family + preset + KEY=VALUE overrides, on top of a frozen base.

Each family's module provides `build(preset, overrides, base, data)`: `base` is the loaded model
folder the family freezes and extends (a t2i model for the video families, a spectral model for
sketch inpainting; None for families trained from scratch), `data` the training set's info
(`LatentSetInfo`, or `TokenSetInfo` for the token families).
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
    "spectral": "vidtool.generators.spectral_transformer",
    "spectral-inpaint": "vidtool.generators.spectral_inpaint",
    "dmg": "vidtool.generators.dmg",
}
# Families that extend a frozen trained model (train-denoiser --base DIR) → the family that base is.
BASES = {"keyframes": "t2i", "interp": "t2i", "interp-mfi": "t2i", "harivo": "t2i", "spectral-inpaint": "spectral"}
# Families trained on token ids of a quantized tokenizer (a token set) instead of continuous latents.
TOKEN_FAMILIES = {"spectral", "spectral-inpaint"}


def build_generator(family: str, preset: str, overrides: list[str], base: Path | None, data: Any):
    """`overrides` are `--set KEY=VALUE` strings, checked against the family's config fields."""
    from vidtool.autoencoders.build import parse_overrides
    from vidtool.checkpoint import model_class

    if family not in BUILDERS:
        raise UserError(f"unknown generator family {family!r}; known: {', '.join(sorted(BUILDERS))}")
    wanted = BASES.get(family)
    if wanted and base is None:
        raise UserError(f"{family} extends a trained {wanted} model: pass --base DIR (a {wanted} model folder)")
    base_model = None
    if base is not None:
        from vidtool.checkpoint import from_pretrained, read_config

        found = read_config(base)["family"]
        if wanted is None:
            raise UserError(f"{family} is trained from scratch; drop --base")
        if found != wanted:
            raise UserError(f"--base {base} is a {found} model; {family} extends a {wanted} folder")
        base_model = from_pretrained(base)
        base_model.source_folder = Path(base).resolve()
    module = importlib.import_module(BUILDERS[family])
    values = parse_overrides(overrides, model_class(family).config_class)
    try:
        return module.build(preset, values, base_model, data)
    except (TypeError, ValueError) as e:
        raise UserError(f"cannot build {family} preset {preset!r} with {overrides}: {e}") from e
