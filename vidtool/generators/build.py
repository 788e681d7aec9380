"""Build a generator to train: family + preset + KEY=VALUE overrides, on top of a frozen base.

Each family's module provides `build(preset, overrides, base, data)`: `base` is the loaded model
folder the family freezes and extends (a t2i model for the video families, a spectral model for
sketch inpainting; None for families trained from scratch); for the video families it may also be a
diffusers Stable Diffusion pipeline root or its `unet/` folder, wrapped as a t2i model as it is, `data` the training set's info
(`LatentSetInfo`, or `TokenSetInfo` for the token families).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from vidtool.errors import UserError


def build_generator(family: str, preset: str, overrides: list[str], base: Path | None, data: Any):
    """`overrides` are `--set KEY=VALUE` strings, checked against the family's config fields."""

    from vidtool.families import REGISTRY, trainable
    from vidtool.standard_folders import is_diffusers_unet

    if family not in trainable():
        raise UserError(f"unknown generator family {family!r}; known: {', '.join(sorted(trainable()))}")
    entry = REGISTRY[family]
    wanted = entry.base
    values = checked_settings(family, preset, overrides)
    module = importlib.import_module(entry.module)
    if wanted and base is None:
        raise UserError(f"{family} extends a trained {wanted} model: pass --base DIR (a {wanted} model folder)")
    base_model = None
    if base is not None and is_diffusers_unet(base):
        if wanted != "t2i":
            raise UserError(f"--base {base} is a diffusers U-Net; {family} extends a {wanted or 'no'} model")
        from vidtool.generators.t2i import from_diffusers_base

        base_model = from_diffusers_base(base, data)
    elif base is not None:
        from vidtool.checkpoint import from_pretrained, read_config

        found = read_config(base)["family"]
        if wanted is None:
            raise UserError(f"{family} is trained from scratch; drop --base")
        if found != wanted:
            raise UserError(f"--base {base} is a {found} model; {family} extends a {wanted} folder")
        base_model = from_pretrained(base)
        base_model.source_folder = Path(base).resolve()
    try:
        return module.build(preset, values, base_model, data)
    except (TypeError, ValueError) as e:
        raise UserError(f"cannot build {family} preset {preset!r} with {overrides}: {e}") from e


def checked_settings(family: str, preset: str, overrides: list[str]) -> dict[str, Any]:
    """The `--set` values of a generator, typed and within the size bounds (vidtool.config_limits),
    and the preset they make within the parameter bound: run before the training set is encoded and
    again before the model is built, so an absurd size is one line, not a hang."""
    from vidtool.autoencoders.build import parse_overrides
    from vidtool.checkpoint import model_class
    from vidtool.config_limits import check_parameters, check_values
    from vidtool.families import REGISTRY

    cls = model_class(family)
    values = parse_overrides(overrides, cls.config_class)
    check_values(values, "--set")
    module = importlib.import_module(REGISTRY[family].module)
    if hasattr(module, "preset"):
        try:
            config = module.preset(preset, **values)
        except (TypeError, ValueError):
            return values  # the family's own build says what is wrong with the preset
        check_values(config, f"{family} preset {preset!r} with --set")
        check_parameters(cls, config, f"{family} preset {preset!r} with --set")
    return values
