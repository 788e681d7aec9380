"""`vidtool info`: what a tensor file or model folder holds."""

from __future__ import annotations

import json

import typer

app = typer.Typer(add_completion=False)

EXAMPLE = """Examples:

  vidtool info clip.safetensors

  vidtool encode in.mp4 | vidtool info -

  vidtool info runs/mbq --json               # a model folder (train-vae -o runs/mbq)"""


@app.command(help=f"Show a tensor file or model folder: kind, tensors, metadata, provenance.\n\n{EXAMPLE}")
def info(
    path: str = typer.Argument("-", help="Tensor file, model folder, or - for stdin."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON on stdout instead of a table."),
) -> None:
    from vidtool.info import describe

    report = describe(path)
    if as_json:
        print(json.dumps(report, indent=2))
        return
    _print_table(report)


def _print_table(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    out = Console()
    title = f"{report['path']}  ({report['what']}, {report.get('kind') or report.get('family')})"
    tensors = Table(title=shown(title), show_lines=False)
    for column in ("tensor", "dtype", "shape"):
        tensors.add_column(column)
    for name, t in report["tensors"].items():
        tensors.add_row(shown(name), shown(t["dtype"]), "×".join(map(str, t["shape"])))
    out.print(tensors)
    meta = Table(show_header=False, box=None)
    for key, value in report["metadata"].items():
        meta.add_row(f"[bold]{shown(key)}[/]", shown(value if isinstance(value, str) else json.dumps(value)))
    out.print(meta)


def shown(text: str) -> str:
    """Text from a file, safe to print on a terminal: control and format characters (ESC and OSC
    sequences that retitle or recolour the terminal, bidi overrides that reorder what is read) are
    written as escapes, and rich's [markup] is printed as it is."""
    import unicodedata

    from rich.markup import escape

    unsafe = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}
    return escape("".join(ch.encode("unicode_escape").decode("ascii") if unicodedata.category(ch) in unsafe else ch
                          for ch in str(text)))
