"""`--config FILE` for every stage: a YAML or JSON mapping of option names to values, applied as
click's `default_map` of the stage, so that a flag given on the command line wins over the file.

Keys are the option names with dashes or underscores (`batch-size`, `batch_size`); list options
take lists. `--set` entries are a list of "KEY=VALUE" strings, a mapping, or dotted top-level keys
(`set.block_out_channels: [32, 32, 32]`); they go before the command line's own `--set`s, which
therefore win key by key. The file's keys are checked against the stage's options.

    batch-size: 8
    steps: 2000
    data: [data/shapes/manifest.jsonl, data/photos/manifest.jsonl]
    set: {block_out_channels: [32, 32, 32]}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vidtool.errors import UserError

HELP = ("Read the stage's options from a YAML or JSON file (keys: option names; flags on the command line win); "
        "training stages save what they ran with as OUT/config.resolved.yaml, itself a valid --config.")
SET = "set_"  # the parameter name of `--set`


def option():
    """`--config` as it shows in a stage's --help; `split` takes it off the arguments before click parses
    them. Built by typer from a throwaway command, so it is the click flavour typer's commands use."""
    import typer

    options = typer.Typer(add_completion=False)

    @options.command()
    def shared(config: str = typer.Option(None, "--config", metavar="FILE", help=HELP, show_default=False)) -> None:
        """Only its option is used."""

    (param,) = typer.main.get_command(options).params
    param.expose_value = False
    return param


def _is_option(param) -> bool:
    return param.param_type_name == "option"


def split(args: list[str]) -> tuple[str | None, list[str]]:
    """The --config file named in `args` (before any `--`) and the arguments without it."""
    rest, found, i = [], None, 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest.extend(args[i:])
            break
        if arg == "--config":
            if i + 1 >= len(args):
                raise UserError("--config needs a file: --config run.yaml")
            found, i = args[i + 1], i + 2
            continue
        if arg.startswith("--config="):
            found = arg.partition("=")[2]
        else:
            rest.append(arg)
        i += 1
    return found, rest


def apply(command, stage: str, path: str, args: list[str]) -> tuple[dict[str, Any], list[str]]:
    """(the stage's default_map, its arguments with the file's --set entries in front)."""
    from vidtool.options_file import read_options_file

    values = read_options_file(Path(path))
    by_name: dict[str, Any] = {}
    for param in command.params:
        if not param.expose_value:
            continue
        by_name[param.name] = param
        for opt in param.opts:
            if opt.startswith("--"):
                by_name[opt[2:].replace("-", "_")] = param
    defaults: dict[str, Any] = {}
    sets: list[str] = []
    for key, value in values.items():
        name = str(key).replace("-", "_")
        if name.startswith("set."):
            name, value = SET, {name[4:]: value}
        param = by_name.get(name)
        if param is None:
            known = sorted({p.opts[-1].lstrip("-") if _is_option(p) else p.name
                            for p in by_name.values()})
            raise UserError(f"{path}: {stage} has no option {key!r}; its options: {', '.join(known)}")
        if param.name == SET:
            sets.extend(_set_entries(path, value))
        else:
            defaults[param.name] = value
    return defaults, [part for entry in sets for part in ("--set", entry)] + args


def _set_entries(path: str, value: Any) -> list[str]:
    """`--set` values from a file: "KEY=VALUE" strings as they are, mappings as KEY=JSON."""
    if isinstance(value, dict):
        return [f"{key}={json.dumps(item)}" for key, item in value.items()]
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and "=" in v for v in value):
        raise UserError(f"{path}: set must be a mapping or a list of \"KEY=VALUE\" strings")
    return value


def resolved(ctx) -> dict[str, Any]:
    """The options a stage ran with, keyed as --config reads them (a file `--config` accepts again)."""
    names = {p.name: (p.opts[0][2:] if _is_option(p) and p.opts[0].startswith("--") else p.name)
             for p in ctx.command.params}
    order = [p.name for p in ctx.command.params if p.name in ctx.params]  # as --help lists them
    return {names[name]: _plain(ctx.params[name]) for name in order}


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return getattr(value, "value", value)  # enums


def save_resolved(ctx, path: Path) -> None:
    import yaml

    from vidtool.atomic import atomic_path

    with atomic_path(path) as tmp:
        Path(tmp).write_text(f"# vidtool {ctx.info_name}: the options this run used (vidtool {ctx.info_name} "
                             f"--config {path.name})\n" + yaml.safe_dump(resolved(ctx), sort_keys=False))
