"""Model folders: `config.json` (family + hyperparameters) and `model.safetensors`.

Every model class carries a class attribute `family` and a dataclass `config`, and is rebuilt from
the config alone (`Model(config)`), in the Hugging Face `save_pretrained`/`from_pretrained` style.
Nothing here downloads: a checkpoint is always a local folder. A diffusers AutoencoderKL folder (or a
pipeline root, meaning its `vae/`) is read as it is, as the `sd-vae` family (vidtool.autoencoders.sd_vae),
and a diffusers VQModel (Kandinsky's MoVQ, a Kandinsky pipeline's `movq/`) as the `vq-model` family
(vidtool.autoencoders.vq_model); their weights file is diffusers' `diffusion_pytorch_model.safetensors`.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib
import json
import math
from pathlib import Path
from typing import Any

from vidtool.atomic import atomic_path, atomic_write_text
from vidtool.config_limits import MAX_PARAMETERS, check_values
from vidtool.errors import UserError
from vidtool.families import REGISTRY

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
# diffusers component classes read from their own folders -> the vidtool family that wraps each.
DIFFUSERS_FAMILIES = {"AutoencoderKL": "sd-vae", "VQModel": "vq-model"}

# What a config's own checks and a model's constructor raise on values no trained model has (a zero
# group size, an empty list of widths); for a config.json that is the folder's fault, not a bug.
_BAD_CONFIG = (TypeError, ValueError, RuntimeError, ZeroDivisionError, AssertionError, IndexError, KeyError,
               OverflowError, MemoryError)

# family -> "module:Class", from the one registry (vidtool/families.py).
FAMILIES: dict[str, str] = {name: entry.model for name, entry in REGISTRY.items()}


def model_class(family: str) -> type:
    if family not in FAMILIES:
        raise UserError(f"unknown model family {family!r}; known: {', '.join(sorted(FAMILIES))}")
    module, name = FAMILIES[family].split(":")
    return getattr(importlib.import_module(module), name)


def config_from_dict(cls: type, values: dict[str, Any], source: str = "config.json") -> Any:
    """Build the model's config dataclass, turning JSON lists back into tuples where declared. `source`
    names the file in error messages."""
    config_cls = cls.config_class
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    unknown = set(values) - set(fields)
    if unknown:
        raise UserError(f"{source} has keys {sorted(unknown)} that {config_cls.__name__} does not know")
    for name, value in values.items():
        check_value(config_cls.__name__, name, value, fields[name].default, source)
    check_values(values, f"{source}: {config_cls.__name__}")  # before __post_init__ builds anything from them
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    try:
        config = config_cls(**kwargs)
    except _BAD_CONFIG as e:  # the config's own checks (__post_init__)
        raise UserError(f"bad {config_cls.__name__} in {source}: {str(e).splitlines()[0] if str(e) else e!r}") from e
    check_values(config, f"{source}: {config_cls.__name__}")  # what __post_init__ derived or nested
    return config


def check_value(owner: str, name: str, value: Any, default: Any, source: str = "config.json") -> None:
    """A config.json (or `--set`, `source`) value has its field's type (from the field's default) and,
    if a number, is finite and not negative where the default is a count; a string channel count or a
    negative width would otherwise fail deep inside a layer's constructor."""
    import math

    def numbers(v):
        if isinstance(v, (list, tuple)):
            for item in v:
                yield from numbers(item)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            yield v

    if default is dataclasses.MISSING or default is None:  # no default to learn the type from
        expected = None
    elif isinstance(default, bool):
        expected = bool
    elif isinstance(default, int):
        expected = int
    elif isinstance(default, float):
        expected = (int, float)
    elif isinstance(default, str):
        expected = str
    elif isinstance(default, tuple):
        expected = list
    else:
        expected = None
    if expected is not None and (not isinstance(value, expected) or (expected is not bool and isinstance(value, bool))):
        said = {bool: "true or false", int: "a whole number", str: "a string", list: "a list"}.get(expected, "a number")
        raise UserError(f"{source}: {owner}.{name} is {str(value)[:40]!r}; it must be {said}")
    if any(not math.isfinite(v) for v in numbers(value)):
        raise UserError(f"{source}: {owner}.{name} holds a NaN or infinite number")
    if isinstance(default, int) and not isinstance(default, bool) and default >= 0 and value < 0:
        raise UserError(f"{source}: {owner}.{name} is {value}; it must not be negative")


def save_pretrained(model: Any, folder: str | Path, extra: dict[str, Any] | None = None,
                    tensors: dict[str, Any] | None = None) -> Path:
    """Write config.json and model.safetensors atomically; `extra` is stored beside the config.
    `tensors`: the weights to write instead of the model's own (full CPU tensors gathered from a
    sharded model), keyed like its state_dict; of tied names only the first is kept, as save_model does."""
    from safetensors.torch import save_file, save_model

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / WEIGHTS_NAME) as tmp:
        if tensors is None:
            save_model(model, str(tmp), metadata={"vidtool.family": model.family})
        else:
            first = {}
            for name, p in model.named_parameters(remove_duplicate=False):
                first.setdefault(id(p), name)
            tied = {name for name, p in model.named_parameters(remove_duplicate=False) if first[id(p)] != name}
            kept = {k: v.contiguous() for k, v in tensors.items() if k not in tied}
            save_file(kept, str(tmp), metadata={"vidtool.family": model.family})
    doc = {"family": model.family, "config": dataclasses.asdict(model.config)}
    if getattr(model, "codes_of", None):
        doc["codes_of"] = list(model.codes_of)
    if extra:
        doc["extra"] = extra
    atomic_write_text(folder / CONFIG_NAME, json.dumps(doc, indent=2) + "\n")
    return folder


def read_config(folder: str | Path) -> dict[str, Any]:
    """The model's config.json as {"family", "config", ...}; a diffusers folder of a class in
    DIFFUSERS_FAMILIES (or a pipeline root: its vae/) gets one made from its own config, with
    "diffusers": True."""
    from vidtool.standard_folders import component, describe, first_line

    folder = component(folder, "vae", "the model folder")
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise UserError(f"{folder} is not a model folder (no {CONFIG_NAME}); pass the folder a train stage wrote")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid JSON ({e.msg} at line {e.lineno})") from e
    except RecursionError as e:  # absurd nesting
        raise UserError(f"{path} nests its JSON too deep to be a vidtool config") from e
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text, so not a vidtool config") from e
    except ValueError as e:  # json's own limits, such as an integer of over 4,300 digits
        raise UserError(f"{path} is not a vidtool config ({first_line(e)})") from e
    if not isinstance(doc, dict):
        raise UserError(f"{path} is not a vidtool config (a JSON object with 'family' and 'config')")
    if doc.get("_class_name") in DIFFUSERS_FAMILIES:
        from vidtool.autoencoders.sd_vae import diffusers_config

        return {"family": DIFFUSERS_FAMILIES[doc["_class_name"]], "config": {"diffusers": diffusers_config(doc)},
                "diffusers": True}
    if "family" not in doc or "config" not in doc:
        raise UserError(f"{folder} is {describe(folder)}, not a vidtool model or a diffusers "
                        f"{' or '.join(DIFFUSERS_FAMILIES)} folder")
    if not isinstance(doc["family"], str) or not isinstance(doc["config"], dict):
        raise UserError(f"{path}: 'family' must be a string and 'config' an object")
    return doc


def model_folder(folder: str | Path) -> Path:
    """The folder that holds the model's weights: `folder`, or a pipeline root's vae/."""
    from vidtool.standard_folders import component

    return component(folder, "vae", "the model folder")


def weights_file(folder: str | Path) -> Path:
    """The weights file of a vidtool folder (model.safetensors) or a diffusers one."""
    from vidtool.standard_folders import DIFFUSERS_WEIGHTS

    folder = model_folder(folder)
    diffusers = folder / DIFFUSERS_WEIGHTS
    return diffusers if diffusers.is_file() and not (folder / WEIGHTS_NAME).is_file() else folder / WEIGHTS_NAME


def from_pretrained(folder: str | Path, device: str = "cpu", dtype: Any = None) -> Any:
    """Rebuild a model from its folder and load its weights (strict); `dtype` (a torch dtype, default
    float32) casts them once, on the host before they move to `device` (`vidtool.precision.cast`)."""
    import torch
    from safetensors.torch import load_model

    from vidtool.precision import cast

    folder = model_folder(folder)
    doc = read_config(folder)
    cls = model_class(doc["family"])
    weights = weights_file(folder)
    if not weights.is_file():
        raise UserError(f"{folder} has no {weights.name}")
    if doc.get("diffusers"):
        check_values(doc["config"], f"{folder}/{CONFIG_NAME}")  # before diffusers builds it
        model = cls.from_diffusers(folder)
        if dtype is not None:
            cast(model, dtype)
        return model.to(device).eval()
    config = config_from_dict(cls, doc["config"], f"{folder}/{CONFIG_NAME}")
    if torch.get_default_device().type != "meta":
        _check_shapes(cls, config, folder, weights)
    model = build(cls, config, folder)
    if doc.get("codes_of"):
        model.codes_of = list(doc["codes_of"])
    if torch.get_default_device().type == "meta":
        # Built for shapes only (an FSDP rank other than 0: vidtool.train.parallel.build_device);
        # rank 0's weights fill it when it is sharded, so none are read here.
        return model.eval()
    try:
        load_model(model, str(weights), strict=True)
    except Exception as e:  # safetensors raises several types for corrupt or mismatched files
        raise UserError(f"cannot load {weights}: {str(e).splitlines()[0]}") from e
    if dtype is not None:
        cast(model, dtype)
    return model.to(device).eval()


def _check_shapes(cls: type, config: Any, folder: Path, weights: Path) -> None:
    """The config's parameter shapes, from a model built on the meta device (no memory), against the
    weights file's header: an edited config naming a far larger model is refused before it is
    allocated, instead of exhausting the machine's memory."""
    import torch

    from vidtool.tensorfile import read_header_file

    try:
        with torch.device("meta"):
            sizes = {k: v.numel() for k, v in cls(config).state_dict().items()}
    except Exception:  # noqa: BLE001 - a model that reads values while built (.item()) cannot be built on
        return  # meta; the real build below checks its config
    if sum(sizes.values()) > MAX_PARAMETERS:
        raise UserError(f"{folder}: {CONFIG_NAME} makes a model of {sum(sizes.values()) / 1e9:.1f}e9 values; at most "
                        f"{MAX_PARAMETERS / 1e9:.0f}e9 are allowed")
    header, _ = read_header_file(weights)
    stored = {k: math.prod(v["shape"]) for k, v in header.items() if k != "__metadata__"}
    for name, count in stored.items():
        if name in sizes and sizes[name] != count:
            raise UserError(f"{folder}: {CONFIG_NAME} makes {name[:60]} of {sizes[name]:,} values, but {WEIGHTS_NAME} "
                            f"holds {count:,}; the config does not belong to these weights")
    # Tied weights are stored once, so the model may count more names; but not more values than all
    # stored tensors twice over (a config edited to a larger model adds layers the file lacks).
    if sum(sizes.values()) > 2 * sum(stored.values()):
        raise UserError(f"{folder}: {CONFIG_NAME} makes a model of {sum(sizes.values()):,} values, but {WEIGHTS_NAME} "
                        f"holds {sum(stored.values()):,}; the config does not belong to these weights")


def build(cls: type, config: Any, folder: Path) -> Any:
    """`cls(config)`; a config whose values pass their types but not the layers (a zero width, a
    channel count no group size divides) is the folder's fault, said in one line."""
    try:
        return cls(config)
    except _BAD_CONFIG as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"{folder}/{CONFIG_NAME} does not build a {cls.family} model: {reason[:200]}") from e


def spatial_factor(folder: str | Path) -> int:
    """Pixels per latent cell of the autoencoder in `folder`, from its config alone: the model is
    built on the meta device, so no weights are read or allocated."""
    import torch

    doc = read_config(folder)
    cls = model_class(doc["family"])
    with torch.device("meta"):
        return build(cls, config_from_dict(cls, doc["config"], f"{folder}/{CONFIG_NAME}"), Path(folder)).spatial_factor


def digest(folder: str | Path) -> str:
    """Short content digest of a checkpoint's weights; tensor files record it as `vidtool.model`.
    Hashed once per version of the file (its path, inode, size and modification time; vidtool's
    atomic writes replace the inode), not once per call: `encode` tags every clip it writes, and
    sha256 of movq-tiny's 12 MB took a third of a 16-frame 64² encode."""
    path = weights_file(folder).resolve()
    stat = path.stat()
    return _file_digest(path, stat.st_ino, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _file_digest(path: Path, inode: int, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def model_tag(folder: str | Path) -> str:
    """`family@digest`, the value of the `vidtool.model` metadata key."""
    return code_tags(folder)[0]


def code_tags(folder: str | Path) -> list[str]:
    """Tags whose latents or token ids this model encodes and decodes alike: its own, then those of
    the models it was fine-tuned from with a frozen encoder and codebook (config.json "codes_of",
    written by `train-vae --init` for a decoder-only run). The config is read once: find_by_tag asks
    this of every folder on the search path."""
    doc = read_config(folder)
    return [f"{doc['family']}@{digest(folder)}", *doc.get("codes_of", [])]


def shares_codes(folder: str | Path, tag: str) -> bool:
    """Whether `folder` decodes what the model `tag` wrote (and tokenizes to the same ids)."""
    return tag in code_tags(folder)
