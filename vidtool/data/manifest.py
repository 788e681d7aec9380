"""Dataset manifests: a JSONL file, one record per clip.

A record has `path` (relative to the manifest's folder, or absolute) and usually `caption`; optional
`fps`, `mask`, `sketch`, `label`; any other keys pass through untouched. `mask` and `sketch` are
paths too and follow the same rules as `path`.

The clip's shape, optional: `frames` (at its own rate), `fps`, `height`, `width`. make-dataset and
encode/tokenize --manifest write them; bucketed training (vidtool.data.buckets) reads them, and
probes the file of a record that lacks any of them, so older manifests keep working.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from vidtool.atomic import atomic_write_text
from vidtool.errors import UserError

PATH_KEYS = ("path", "mask", "sketch")
SHAPE_KEYS = ("frames", "fps", "height", "width")


def read_manifest(path: str | os.PathLike) -> list[dict]:
    """Records of a JSONL manifest; blank lines are skipped, anything malformed names its line."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise UserError(f"manifest not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read manifest {path}: {e}") from None
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError) as e:  # bad JSON, an integer too long to parse, absurd nesting
            reason = e.msg if isinstance(e, json.JSONDecodeError) else type(e).__name__
            raise UserError(f"{path}:{number}: not valid JSON ({reason}); one JSON object per line") from None
        if not isinstance(record, dict):
            raise UserError(f"{path}:{number}: a record must be a JSON object, got {type(record).__name__}")
        if not isinstance(record.get("path"), str) or not record["path"]:
            raise UserError(f'{path}:{number}: record has no "path"; every clip needs one')
        if "caption" in record and not isinstance(record["caption"], str):
            raise UserError(f'{path}:{number}: "caption" must be a string')
        for key in SHAPE_KEYS:
            value = record.get(key)
            if value is not None and not (isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
                                          and math.isfinite(value)):
                raise UserError(f'{path}:{number}: "{key}" must be a positive number, got {value!r}')
        for key in PATH_KEYS:
            if key in record and not isinstance(record[key], str):
                raise UserError(f'{path}:{number}: "{key}" must be a path string, got {type(record[key]).__name__}')
            if key in record:
                try:
                    _check_inside(record[key])
                except UserError as e:
                    raise UserError(f"{path}:{number}: {e}") from None
        records.append(record)
    return records


def read_prompt_lines(path: str | os.PathLike) -> list[str]:
    """The prompts of a text file, one per line (UTF-8; blank lines skipped)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no such prompts file: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text (byte {e.start}); save the prompts file as UTF-8") from None
    except OSError as e:
        raise UserError(f"cannot read prompts file {path}: {e.strerror}") from None
    if "\0" in text:
        raise UserError(f"{path} holds NUL bytes; a prompts file is plain text, one prompt per line")
    return [line.strip() for line in text.splitlines() if line.strip()]


def write_manifest(path: str | os.PathLike, records: list[dict]) -> None:
    """Write records as JSONL atomically, so a reader never sees half a manifest."""
    lines = []
    for record in records:
        if not isinstance(record.get("path"), str):
            raise ValueError(f'every manifest record needs a string "path": {record!r}')
        lines.append(json.dumps(record, ensure_ascii=False) + "\n")
    atomic_write_text(path, "".join(lines))


def resolve(manifest_path: str | os.PathLike, record_path: str | os.PathLike) -> Path:
    """The file a record points at: absolute paths as they are, relative ones from the manifest's folder.

    A relative path must stay inside the manifest's folder (the dataset root) after symlinks are
    followed too: a link in a downloaded dataset to /etc/passwd or ~/.ssh is refused like a '..'."""
    record_path = Path(record_path)
    if record_path.is_absolute():
        return record_path
    _check_inside(record_path)
    root = Path(manifest_path).parent
    target = root / record_path
    real_root, real_target = os.path.realpath(root), os.path.realpath(target)
    if os.path.commonpath([real_root, real_target]) != real_root:
        raise UserError(f"{target} is a symlink (or lies under one) that points outside the dataset root "
                        f"{root} (to {real_target}); copy the file in or give an absolute path")
    return target


def _check_inside(record_path: str | os.PathLike) -> None:
    # A relative path that climbs out with ".." would let a downloaded manifest read any file the
    # user can; absolute paths are explicit, so they are the way to point elsewhere.
    if not isinstance(record_path, (str, os.PathLike)):
        raise UserError(f"a path must be a string, got {record_path!r}")
    if "\0" in os.fspath(record_path):
        raise UserError(f"path {str(record_path)!r} contains a NUL character; no file can have that name")
    if os.path.isabs(record_path):
        return
    normal = os.path.normpath(record_path)
    if normal == ".." or normal.startswith(".." + os.sep):
        raise UserError(
            f"relative path {str(record_path)!r} escapes the manifest's folder with '..'; "
            "move the file inside it or give an absolute path"
        )


def prompts_of(prompt: str | None, prompts: Path | None) -> list[str]:
    """A generating stage's prompts: the one given as an argument, or --prompts FILE's lines."""
    from vidtool.errors import UserError

    if (prompt is None) == (prompts is None):
        raise UserError("give one prompt as an argument or --prompts FILE (one prompt per line), not both or neither")
    if prompt is not None:
        if not prompt.strip():
            raise UserError("the prompt is empty; describe the video, e.g. \"a red circle moving right\"")
        return [prompt.strip()]
    items = read_prompt_lines(prompts)
    if not items:
        raise UserError(f"{prompts} holds no prompts; write one prompt per line")
    return items
