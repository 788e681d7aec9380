"""The file `--config FILE` names: a YAML or JSON mapping of option names to values (how it applies
to a stage's options is stages.run_config's)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vidtool.errors import UserError


def read_options_file(path: Path) -> dict[str, Any]:
    if path.is_dir():
        raise UserError(f"--config names a YAML or JSON options file, and {path} is a folder; a folder of "
                        "model configs goes to the stage's own option (import-weights: --config-dir)")
    if not path.is_file():
        raise UserError(f"no such config file: {path}")
    text = path.read_text()
    if path.suffix.lower() == ".json":
        try:
            values = json.loads(text)
        except json.JSONDecodeError as e:
            raise UserError(f"{path} is not valid JSON: {e}") from e
    else:
        try:
            import yaml
        except ImportError as e:
            raise UserError(f"{path} is YAML, which needs PyYAML (pip install pyyaml); or write it as .json") from e
        try:
            values = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise UserError(f"{path} is not valid YAML: {' '.join(str(e).split())}") from e
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise UserError(f"{path} must hold a mapping of option names to values, not a {type(values).__name__}")
    return values
