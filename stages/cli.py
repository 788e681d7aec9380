"""The `vidtool` command: global options, lazy stage loading and the exit-status rules.

Exit status: 0 success; 2 a user error (one line on stderr, `--debug` for the traceback) or a usage
error; 1 a bug (traceback); 130 interrupted; 141 the reader of our stdout went away (as `head` or a
closed pipe causes) — quietly, like other Unix filters.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback

import typer
from typer.core import TyperGroup

from stages import STAGES, run_config
from stages.context import settings
from stages.global_options import DEVICE_HELP, DTYPE_HELP, Device, plain_flags, stage_options


class StageGroup(TyperGroup):
    """Lists stages from the STAGES table and imports a stage's module only when it is asked for.

    Stage modules import nothing heavy at module level, so listing them for `--help` stays fast.
    """

    def list_commands(self, ctx) -> list[str]:
        return sorted(STAGES)

    def get_command(self, ctx, name: str):
        if name not in STAGES:
            return None
        if name not in self.commands:
            command = typer.main.get_command(importlib.import_module(STAGES[name]).app)
            command.name = name
            command.params.extend([*stage_options(name), run_config.option()])
            plain_flags(command.get_params(ctx) if ctx is not None else command.params)  # no ctx: no help option yet
            self.commands[name] = command
        return self.commands[name]

    def get_params(self, ctx):
        return plain_flags(super().get_params(ctx))

    def resolve_command(self, ctx, args):
        for name in STAGES:  # typo suggestions look at self.commands
            self.get_command(ctx, name)
        name, command, rest = super().resolve_command(ctx, args)
        path, rest = run_config.split(rest)
        if path is not None:  # a child context takes its default_map from its parent's, by name
            defaults, rest = run_config.apply(command, name, path, rest)
            ctx.default_map = {**(ctx.default_map or {}), name: defaults}
        return name, command, rest

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except BrokenPipeError as e:
            # click turns EPIPE into a silent exit 1; carry it past click so main() can exit 141.
            raise ReaderGone from e


class ReaderGone(Exception):
    """The reader of stdout closed the pipe."""


app = typer.Typer(cls=StageGroup, add_completion=False, no_args_is_help=True, rich_markup_mode="rich",
                  context_settings={"help_option_names": ["-h", "--help"]})


def _version(value: bool) -> None:
    if value:
        from vidtool import __version__

        print(f"vidtool {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    device: Device = typer.Option(Device.auto, envvar="VIDTOOL_DEVICE", help=DEVICE_HELP),
    dtype: str = typer.Option("auto", envvar="VIDTOOL_DTYPE", help=DTYPE_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or messages on stderr (errors still print)."),
    debug: bool = typer.Option(False, "--debug", help="Show the full traceback of errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """vidtool: text-to-video stages that read and write safetensors tensor files.

    Each stage reads a file or stdin and writes a file (-o) or stdout, so stages pipe:

    [bold]vidtool generate "a red circle moving right" | vidtool interpolate | vidtool decode -o out.mp4[/]

    Run [bold]vidtool STAGE --help[/] for a stage's options and an example.

    --device and --dtype also work after the stage's name: [bold]vidtool decode --dtype bf16 z.safetensors[/];
    --compile follows the name of generate, interpolate, encode, tokenize and decode.
    """
    from vidtool.precision import check_name

    settings.device, settings.dtype, settings.quiet, settings.debug = device.value, check_name(dtype), quiet, debug
    settings.compile = False  # `--compile` comes after a stage's name


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    from vidtool.atomic import stop_signals_exit

    with stop_signals_exit():
        _run(args, debug)


def _run(args: list[str], debug: bool) -> None:
    from vidtool.errors import UserError

    try:
        status = typer.main.get_command(app).main(args=args, prog_name="vidtool", standalone_mode=False)
    except typer.Exit as e:
        status = e.exit_code
    except typer.TyperException as e:  # usage errors: bad option, missing argument, unknown stage
        # One line, like every other user error: click's own report spans a usage line, a hint and a box.
        where = e.ctx.command_path if getattr(e, "ctx", None) is not None else "vidtool"
        print(f"vidtool: error: {' '.join(e.format_message().split())} (see `{where} --help`)", file=sys.stderr)
        sys.exit(e.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        print("vidtool: interrupted", file=sys.stderr)
        sys.exit(130)
    except (BrokenPipeError, ReaderGone):
        # Point stdout at /dev/null so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)
    except UserError as e:
        if debug:
            traceback.print_exc()
        print(f"vidtool: error: {e}", file=sys.stderr)
        sys.exit(2)
    if isinstance(status, int) and status:
        sys.exit(status)


if __name__ == "__main__":
    main()
