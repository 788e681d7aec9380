"""Build an autoencoder for training from a family, a named preset and KEY=VALUE overrides."""

from __future__ import annotations

import dataclasses
import importlib
import json
from pathlib import Path
from typing import Any

from vidtool import checkpoint
from vidtool.config_limits import check_config, check_values
from vidtool.errors import UserError


def parse_overrides(pairs: list[str], config_cls: type) -> dict[str, Any]:
    """`["codebook_size=4096", "patch_sizes=[8,16]"]` → typed values (JSON, lists become tuples)."""
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    names = set(fields)
    overrides = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep:
            raise UserError(f"--set {pair!r}: expected KEY=VALUE")
        if key not in names:
            raise UserError(f"--set {key}: {config_cls.__name__} has no field {key!r}; fields: {', '.join(sorted(names))}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw  # a bare word is a string
        checkpoint.check_value(config_cls.__name__, key, value, fields[key].default, source="--set")
        overrides[key] = tuple(value) if isinstance(value, list) else value
    return overrides


def build_autoencoder(family: str, preset: str, overrides: list[str], init: Path | None = None) -> Any:
    cls = checkpoint.model_class(family)
    module = importlib.import_module(cls.__module__)
    try:
        config = module.preset(preset)
    except ValueError as e:
        raise UserError(str(e)) from e
    values = parse_overrides(overrides, cls.config_class)
    check_values(values, "--set")  # before the config's own checks build anything from them
    try:
        config = dataclasses.replace(config, **values)
    except (ValueError, AssertionError, TypeError) as e:
        raise UserError(f"bad {family} config: {e}") from e
    check_config(cls, config, f"{family} preset {preset!r} with --set")  # before any layer is built
    if init is None:
        return cls(config)
    source = checkpoint.from_pretrained(init)
    if hasattr(cls, "from_init"):
        model = cls.from_init(source, config)
    else:
        model = cls(config)
        model.load_state_dict(source.state_dict())
    if getattr(model, "frozen_codes", False):
        # Encoder and codebook stay the init's: whatever it encoded, this model decodes.
        model.codes_of = checkpoint.code_tags(init)
    return model
