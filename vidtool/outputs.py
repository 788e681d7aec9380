"""A stage's `-o` checked before any work: a format the stage can write, not one of its own inputs,
a folder that exists (or is created, and said so) and can be written to.

What each writer makes is fixed by the output's extension, so `-o out.webm` never holds safetensors
bytes under a media name, and an extension no writer knows is refused rather than guessed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from vidtool.errors import UserError

TENSOR = (".safetensors",)
MEDIA = (".mp4", ".webm", ".mov", ".gif", ".png")  # vidtool.video.write_video's formats


def suffix(out: str | os.PathLike) -> str:
    return Path(out).suffix.lower() if str(out) != "-" else ""


def is_media(out: str | os.PathLike) -> bool:
    return suffix(out) in MEDIA


def check_output(out: str | os.PathLike | None, *, inputs: Iterable[str | os.PathLike | None] = (),
                 suffixes: Iterable[str] = TENSOR, say: Callable[[str], None] | None = None) -> None:
    """Refuse, in one line, an output path this stage cannot or must not write; `-` (stdout) passes.

    `suffixes`: the extensions the stage writes. `inputs`: paths the stage reads; writing onto one
    would destroy the input before (or while) it is read. A missing folder is created and `say`
    hears about it.
    """
    if out is None or str(out) == "-":
        return
    path = Path(out)
    suffixes = tuple(suffixes)
    if suffix(path) not in suffixes:
        given = f"'{path.suffix}'" if path.suffix else "no extension"
        raise UserError(f"-o {path}: {given} is not a format this stage writes; use "
                        f"{', '.join(suffixes[:-1]) + ' or ' + suffixes[-1] if len(suffixes) > 1 else suffixes[0]}")
    if path.is_dir():
        raise UserError(f"-o {path} is a folder; name a file in it")
    for source in inputs:
        if source is not None and str(source) != "-" and _same_file(Path(source), path):
            raise UserError(f"-o {path} is this stage's input {source}; writing it would destroy the input, "
                            "choose another output name")
    folder = path.parent
    if not folder.exists():
        try:
            folder.mkdir(parents=True)
        except OSError as e:
            raise UserError(f"cannot create the output folder {folder}: {e.strerror or e}") from e
        if say is not None:
            say(f"created folder {folder}")
    elif not folder.is_dir():
        raise UserError(f"cannot write {path}: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK) or os.statvfs(folder).f_flag & os.ST_RDONLY:
        raise UserError(f"cannot write {path}: folder {folder} is not writable; choose another output path")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b) or a.resolve() == b.resolve()
    except OSError:  # a path too long or a loop of links: not one we could have written anyway
        return False
