"""Every stage's `--help` examples are commands that parse as written, and the paths they read are ones
that exist (bundled models, recipes) or that another example makes (data sets, training runs)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer

from conftest import ROOT
from stages import STAGES
from stages.cli import app

GROUP = typer.main.get_command(app)
BUNDLED = {p.name for p in (ROOT / "vidtool" / "defaults").iterdir() if p.is_dir()}
OUTPUT_OPTIONS = {"-o", "--out", "--out-dir"}


def stage_help(name: str) -> str:
    with GROUP.make_context("vidtool", [name], resilient_parsing=True) as ctx:
        return GROUP.get_command(ctx, name).help or ""


def example_commands(text: str) -> list[list[str]]:
    """The `vidtool ...` commands (and `torchrun ... -m stages.cli ...`) of a help text, as argument
    lists after `vidtool`: continuation lines joined, `# comments` dropped, pipes and `&&` split."""
    lines = text.replace("\\\n", " ").splitlines()
    commands = []
    for line in lines:
        line = line.strip()
        if not (line.startswith("vidtool ") or line.startswith("torchrun ")):
            continue
        segment: list[str] = []
        for token in [*shlex.split(line, comments=True), "|"]:
            if token in ("|", "&&"):
                commands.append(segment)
                segment = []
            else:
                segment.append(token)
    out = []
    for words in commands:
        if words[0] == "torchrun":
            words = words[words.index("stages.cli"):]
        assert words[0] in ("vidtool", "stages.cli"), words
        out.append(words[1:])
    return out


EXAMPLES = [(name, args) for name in sorted(STAGES) for args in example_commands(stage_help(name))]
# `vidtool --help` shows its examples in rich markup, within sentences: [bold]vidtool ...[/]
EXAMPLES += [("vidtool", args) for found in re.findall(r"\[bold\](vidtool [^\[]*)\[/\]", GROUP.help or "")
             for args in example_commands(found) if not args[0].isupper()]  # not `vidtool STAGE --help`


def parse(args: list[str]) -> None:
    """Parse a command line as `vidtool` would, global options, stage name and stage options (with
    their types and ranges), without running the stage."""
    with GROUP.make_context("vidtool", list(args)) as ctx:
        rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
        name, command, rest = GROUP.resolve_command(ctx, rest)
        with command.make_context(name, rest, parent=ctx):
            pass


def outputs_of(args: list[str]) -> list[str]:
    return [value for option, value in zip(args, args[1:]) if option in OUTPUT_OPTIONS]


MADE = {path.rstrip("/") for _, args in EXAMPLES for path in outputs_of(args)}


def test_every_stage_has_examples():
    assert {name for name, _ in EXAMPLES} == {*STAGES, "vidtool"}
    assert len(EXAMPLES) > 60


@pytest.mark.parametrize("stage, args", EXAMPLES, ids=[f"{n}:{' '.join(a)[:60]}" for n, a in EXAMPLES])
def test_help_example_parses(stage, args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if "--config" in args:  # the file a training run records (OUT/config.resolved.yaml): the maker's family and -o
        config = Path(args[args.index("--config") + 1])
        maker = next(a for _, a in EXAMPLES if str(config.parent) in outputs_of(a))
        config.parent.mkdir(parents=True)
        config.write_text(f"family: {maker[maker.index('--family') + 1]}\nout: {config.parent}\n")
    parse(args)


@pytest.mark.parametrize("stage, args", EXAMPLES, ids=[f"{n}:{' '.join(a)[:60]}" for n, a in EXAMPLES])
def test_help_example_reads_paths_that_exist_or_are_made(stage, args):
    outputs = set(outputs_of(args))
    for word in args:
        if word in outputs or word.startswith("-") or "/" not in word or word.startswith("/"):
            continue
        if re.fullmatch(r"\d+/\d+", word):  # --shard I/N
            continue
        path = word.rstrip("/")
        if Path(path).name in BUNDLED or path.split("/")[0] in ("recipes", "vidtool"):
            assert (ROOT / path).exists(), f"{stage} help: {word} names a bundled file that is not there"
        if path.split("/")[0] in ("data", "runs"):
            assert any(path == made or path.startswith(made + "/") for made in MADE), (
                f"{stage} help: {word} is made by no example (make-dataset, train-vae, train-denoiser -o ...)")


def test_the_model_help_names_the_real_default():
    from vidtool.model_store import default_model

    for role in ("encode", "tokenize"):
        with GROUP.make_context("vidtool", [role], resilient_parsing=True) as ctx:
            command = GROUP.get_command(ctx, role)
        model = next(p for p in command.params if p.name == "model")
        assert f"the bundled {default_model(role).name}" in model.help, (role, model.help)
    assert stage_help("tokenize") != stage_help("encode")


@pytest.mark.parametrize("args", [["decode", "--bogus", "z.safetensors"], ["generate", "a cat", "--steps", "0"],
                                  ["interpolate", "--times", "x"], ["no-such-stage"], ["inpaint", "clip.mp4"]])
def test_the_parser_refuses_what_vidtool_refuses(args):
    with pytest.raises(typer.TyperException):  # what stages.cli reports as a usage error, exit 2
        parse(args)
