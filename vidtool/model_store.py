"""Where checkpoints are found: the bundled defaults, folders on $VIDTOOL_MODELS, or a path given.

A tensor file records `vidtool.model = family@digest` (and `vidtool.model_path`, where the writer
found it); `find_by_tag` returns a folder whose weights have that digest, so `decode` picks the
decoder that matches its input and nothing else, even if the folder has moved.
"""

from __future__ import annotations

import os
from pathlib import Path

from vidtool.checkpoint import WEIGHTS_NAME, code_tags, read_config, weights_file
from vidtool.errors import UserError

BUNDLED = Path(__file__).parent / "defaults"

def search_paths() -> list[Path]:
    extra = [Path(p) for p in os.environ.get("VIDTOOL_MODELS", "").split(os.pathsep) if p]
    return [*extra, BUNDLED]


def _is_model(folder: Path) -> bool:
    """A vidtool model folder or a diffusers one vidtool reads (an AutoencoderKL, a pipeline's vae/)."""
    try:
        read_config(folder)
    except UserError:
        return False
    return weights_file(folder).is_file()


def _model_folders() -> list[Path]:
    found = []
    for root in search_paths():
        if _is_model(root):
            found.append(root)
        elif root.is_dir():
            found.extend(sorted(p for p in root.iterdir() if p.is_dir() and _is_model(p)))
    return found


def default_model(role: str) -> Path:
    """The bundled folder a stage uses when no --model is given: `role` is a stage role
    (`vidtool.families.ROLES`, e.g. "encode") or a family name (its registered default)."""
    from vidtool.families import ROLES, family

    entry = family(ROLES.get(role, role))
    if entry.default is None:
        raise UserError(f"no bundled {entry.name} model; pass --model DIR with one you trained "
                        f"(vidtool train-{'denoiser' if entry.trains_on else 'vae'} --family {entry.name})")
    return bundled(entry.default)


def bundled(name: str) -> Path:
    """The installed folder called `name` (vidtool/defaults/NAME, or one on $VIDTOOL_MODELS)."""
    for root in search_paths():
        if (root / name / WEIGHTS_NAME).is_file():
            return root / name
    raise UserError(f"the default model '{name}' is not installed; pass --model DIR or train one (recipes/tiny/)")


def find_by_tag(tag: str, hint: str | None = None) -> Path:
    """The model folder whose `family@digest` is `tag`; `hint` (the folder the writer used) goes first.
    Failing that, a model fine-tuned from it with a frozen encoder (same codes, a better decoder):
    that is how a bundled decoder can be improved without orphaning the tokens and latents, and the
    generators trained on them, that name the model it replaced."""
    candidates = [Path(hint)] if hint and Path(hint).is_dir() and _is_model(Path(hint)) else []
    fine_tuned = None
    for folder in candidates + _model_folders():
        own, *codes_of = code_tags(folder)
        if own == tag:
            return folder
        if fine_tuned is None and tag in codes_of:
            fine_tuned = folder
    if fine_tuned is not None:
        return fine_tuned
    raise UserError(f"no model matching {tag} on the search path; pass --model DIR with the checkpoint that wrote the input "
                    "(or add its parent folder to $VIDTOOL_MODELS)")


def check_decoder(folder: Path, kind: str, source: str) -> None:
    """The model a tensor file names must be an autoencoder of the kind it holds: a tag edited to name
    a generator, or motion sent to a latent decoder, is refused before the model is loaded."""
    from vidtool.errors import UserError
    from vidtool.families import REGISTRY

    family = read_config(folder)["family"]
    entry = REGISTRY.get(family)
    if entry is None or entry.trains_on is not None:
        raise UserError(f"{source} names {family} ({folder}) as its decoder, but that is not an autoencoder; "
                        "pass --model with the autoencoder that wrote it")
    if (kind == "motion") != (family == "mcd-vae"):
        raise UserError(f"{source} holds {kind}, which the {family} model {folder} cannot decode; "
                        f"{'LaMD motion needs an mcd-vae' if kind == 'motion' else 'an mcd-vae decodes only motion'}")
