"""Bounds on a model config's sizes, checked before any module is built.

A config.json (or a `--set` at training) asking for `layers_per_block: 100000` or a width of 10**7
would otherwise make the build hang or exhaust memory. Every integer a config holds (its own fields,
nested configs such as a video family's `base` T2I config, and the diffusers dicts under `unet` /
`diffusers`) is classed by its field name into a kind (a count of layers, a channel width, a
codebook size, a frame count ...) with a bound far above every paper preset of the project (the test
checks them all); lists are bounded in length too (levels of a U-Net). Then, where the model builds
from its config alone, a build on the meta device (no memory) counts its parameters and refuses more
than `MAX_PARAMETERS`. A violation is a `UserError` naming the field, the value and the bound.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from vidtool.errors import UserError

MAX_PARAMETERS = 20e9  # the largest preset here (MotionAura-L) has 3.1e9
MAX_LIST = 64  # entries of any list: U-Net levels, strides, patch sizes, block types

# (kind, field-name pattern, bound): the first pattern that matches the field's name (its last part,
# lower case) gives the bound. Paper presets reach: 28 blocks, 16 heads, 1280 channels, 4096-d
# text, 2**16 codes, 256 text tokens, 1000 diffusion timesteps, 512-pixel sides.
KINDS: tuple[tuple[str, re.Pattern, int], ...] = tuple((kind, re.compile(pattern), bound) for kind, pattern, bound in (
    ("a count of training steps", r"(^|_)steps?$|^gan_start|warmup", 10**9),
    ("a number of diffusion timesteps", r"timesteps", 100_000),
    ("a queue length", r"queue", 1 << 20),
    ("a codebook size", r"codebook|vocab|num_embeddings|num_class|classes", 1 << 24),
    ("a bit count", r"bits$", 24),
    ("a count of layers or blocks", r"layers|blocks|depth|^num_res", 512),
    ("a head count", r"heads$|^attention_head_dim$|^num_attention_heads", 1024),
    ("a group count", r"groups", 4096),
    ("a frame count", r"frames|keyframes|frame_tokens", 16_384),
    ("a sequence length", r"length|max_position|positions", 16_384),
    ("a spatial size", r"size$|height$|width$|^resolution", 16_384),
    ("a channel width", r"channels|dim$|dims$|hidden|rank|_dim_|embed|features", 32_768),
    ("a stride, kernel or factor", r"stride|kernel|patch|factor|mult|expansion|reduction|skip|scale", 1024),
))
OTHER = ("a size", 10**7)


def kind_of(name: str) -> tuple[str, int]:
    """(what the field counts, its bound) from its name."""
    key = name.lower()
    for kind, pattern, bound in KINDS:
        if pattern.search(key):
            return kind, bound
    return OTHER


def check_values(values: Any, owner: str) -> None:
    """Every integer under `values` (a config dataclass, a dict of config.json or --set values, and
    what they nest) within its field's bound; `owner` names the config in the message."""
    _walk(values, owner, None, depth=0)


def _walk(value: Any, path: str, field: str | None, depth: int) -> None:
    if depth > 32:
        raise UserError(f"{path} nests deeper than 32 levels; a model config does not")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            _walk(getattr(value, f.name), f"{path}.{f.name}", f.name, depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            _walk(item, f"{path}.{key}", str(key), depth + 1)
    elif isinstance(value, (list, tuple)):
        if len(value) > MAX_LIST:
            raise UserError(f"{path} has {len(value)} entries; at most {MAX_LIST} are allowed")
        for item in value:
            _walk(item, path, field, depth + 1)
    elif isinstance(value, int) and not isinstance(value, bool) and field is not None:
        kind, bound = kind_of(field)
        if value > bound:
            raise UserError(f"{path} is {value}, {kind}; at most {bound:,} is allowed")


def check_parameters(cls: type, config: Any, owner: str) -> int | None:
    """The parameter count of `cls(config)` built on the meta device (no memory), refused above
    MAX_PARAMETERS; None where the model cannot be built without its data (it is built for real
    later, and its config's own checks say what is wrong)."""
    import torch

    try:
        with torch.device("meta"):
            model = cls(config)
    except Exception:  # noqa: BLE001 - a model that reads values while built, or a config its checks refuse
        return None
    count = sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers())
    if count > MAX_PARAMETERS:
        raise UserError(f"{owner} makes a model of {count / 1e9:.1f}e9 parameters and buffers; at most "
                        f"{MAX_PARAMETERS / 1e9:.0f}e9 are allowed")
    return count


def check_config(cls: type, config: Any, owner: str, *, parameters: bool = True) -> None:
    """Bounds of every size in `config`, then (if `parameters`) its parameter count."""
    check_values(config, owner)
    if parameters:
        check_parameters(cls, config, owner)
