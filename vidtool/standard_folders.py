"""Third-party model folders as their libraries write them: a diffusers pipeline root
(`model_index.json` beside `unet/`, `vae/`, `text_encoder/`, `tokenizer/`), a diffusers component
folder (`config.json` with `"_class_name"`), a transformers folder (`config.json` with
`"model_type"`). Every option that names a model folder goes through here first, so that a Stable
Diffusion checkout can be passed as it is, whole or by component (DESIGN.md, Checkpoints).
"""

from __future__ import annotations

import json
from pathlib import Path

from vidtool.errors import UserError

PIPELINE_INDEX = "model_index.json"
DIFFUSERS_WEIGHTS = "diffusion_pytorch_model.safetensors"


def quiet_diffusers() -> None:
    """diffusers' loading messages (no `accelerate`, progress bars) would break --quiet and clutter pipes."""
    from diffusers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


# The diffusers U-Net classes vidtool wraps as a frozen text-to-image base (vidtool.generators.t2i).
UNET_CLASSES = ("UNet2DConditionModel", "Kandinsky3UNet")
# Other names a pipeline gives a component: the Kandinsky pipelines call their autoencoder `movq/`.
ALIASES = {"vae": ("vae", "movq")}


def is_pipeline_root(folder: str | Path) -> bool:
    return (Path(folder) / PIPELINE_INDEX).is_file()


def pipeline_index(root: str | Path) -> dict:
    """A pipeline root's model_index.json as a mapping; one line when it is not a JSON object."""
    path = Path(root) / PIPELINE_INDEX
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, RecursionError) as e:
        raise UserError(f"cannot read {path} ({type(e).__name__}); it should be the pipeline's model_index.json "
                        "as diffusers wrote it") from e
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}); it should be the pipeline's "
                        "model_index.json as diffusers wrote it") from e
    if not isinstance(doc, dict):
        raise UserError(f"{path} holds a JSON {type(doc).__name__}, not an object naming the pipeline's components")
    return doc


def named_in_index(root: str | Path, name: str) -> str | None:
    """The folder name under which the pipeline's model_index.json lists `name` (or an alias of it:
    `vae` -> `movq`) as a component it has, else None."""
    index = pipeline_index(root)
    for alias in ALIASES.get(name, (name,)):
        entry = index.get(alias)
        if isinstance(entry, list) and entry and entry[0] is not None:
            return alias
    return None


# What loading a third-party model folder raises when its files are not what they claim: a truncated
# or corrupt weights file (safetensors' own error), a config value of the wrong type or sign (the
# library's validation, or the tensor it cannot build), weights of other shapes.
def load_errors() -> tuple[type[BaseException], ...]:
    from safetensors import SafetensorError

    errors: tuple[type[BaseException], ...] = (OSError, ValueError, TypeError, KeyError, IndexError, RuntimeError,
                                               ZeroDivisionError, AttributeError, SafetensorError)
    try:  # transformers' typed configs (huggingface_hub's strict dataclasses)
        from huggingface_hub.errors import StrictDataclassError
    except ImportError:
        return errors
    return (*errors, StrictDataclassError)


def first_line(error: BaseException) -> str:
    """The error's text on one line (a library's message may span several), cut at 300 characters."""
    text = " ".join(str(error).split())
    return (text or type(error).__name__)[:300]


def part_of(root: Path, name: str) -> Path:
    """`root/name`, or `root/ALIAS` for the first alias of `name` the pipeline has (`vae` -> `movq`)."""
    for alias in ALIASES.get(name, (name,)):
        if (root / alias / "config.json").is_file():
            return root / alias
    return root / name


def component(folder: str | Path, name: str, option: str) -> Path:
    """`folder` itself, or its `name` component when it is a pipeline root (a missing one: one line)."""
    folder = Path(folder)
    if not is_pipeline_root(folder):
        return folder
    part = part_of(folder, name)
    if not (part / "config.json").is_file():
        raise UserError(f"{option} {folder} is a diffusers pipeline without a {name}/ folder; pass the folder "
                        f"that holds the {name} itself")
    return part


def sibling(folder: str | Path, name: str) -> Path | None:
    """The `name` component beside a pipeline component folder (`unet/` -> `../vae`), if there is one."""
    part = part_of(Path(folder).resolve().parent, name)
    return part if (part / "config.json").is_file() and is_pipeline_root(part.parent) else None


def config_json(folder: str | Path) -> dict | None:
    """The folder's config.json as a mapping; None when it has none. Invalid JSON is one line."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid JSON ({e.msg} at line {e.lineno})") from e


def diffusers_class(folder: str | Path) -> str | None:
    """The diffusers class a component folder holds (its config's `_class_name`), else None."""
    doc = config_json(folder)
    return doc.get("_class_name") if isinstance(doc, dict) else None


def is_diffusers_unet(folder: str | Path) -> bool:
    folder = component(folder, "unet", "--base")
    return diffusers_class(folder) in UNET_CLASSES


def describe(folder: str | Path) -> str:
    """What a folder is, for the one-line refusals: 'a diffusers AutoencoderKL folder', 'a
    transformers t5 folder', 'a diffusers pipeline', 'a vidtool harivo model' or 'not a model folder'."""
    folder = Path(folder)
    if is_pipeline_root(folder):
        return "a diffusers pipeline root"
    doc = config_json(folder)
    if not isinstance(doc, dict):
        return "not a model folder (no config.json)"
    if "_class_name" in doc:
        return f"a diffusers {doc['_class_name']} folder"
    if "family" in doc and "config" in doc:
        return f"a vidtool {doc['family']} model"
    if "model_type" in doc:
        return f"a transformers {doc['model_type']} folder"
    return "a folder of unknown kind"


def check_all_weights_read(folder: str | Path, info: dict, what: str) -> None:
    """Refuse a transformers/diffusers load that left weights at random initialisation (the
    `output_loading_info` of from_pretrained): the model would run and produce noise without a word."""
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        raise UserError(f"{folder} lacks {len(missing)} of the {what}'s weights (first: {missing[0]}); is its weights "
                        "file complete and does its config.json match it?")
