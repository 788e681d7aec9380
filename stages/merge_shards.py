"""`vidtool merge-shards`: join the shard outputs of a sharded data stage into one manifest."""

from __future__ import annotations

from typing import List, Optional

import typer

app = typer.Typer(add_completion=False)

HELP = """Join the shards of one sharded data-stage run into a single manifest.

The data stages (index, recaption, curate-sketch-dataset, cut-scenes, score,
encode/tokenize --manifest) run with --shard I/N, or as a SLURM job array, and
each shard writes STAGE-shard-I-of-N.jsonl with .stats.json
(and .errors.jsonl) beside it. merge-shards checks that every shard of the run is there and that
all ran with the same settings on the same input, then writes the records in input order —
the same manifest one unsharded run writes — plus OUT.errors.jsonl and OUT.stats.json. Paths in
the records are rewritten relative to OUT's folder.

(`vidtool evaluate --merge` joins evaluate's shards into its report.)

Examples:

  vidtool tokenize --manifest data/shapes/manifest.jsonl --out-dir tokens/ --shard 0/2
  vidtool tokenize --manifest data/shapes/manifest.jsonl --out-dir tokens/ --shard 1/2
  vidtool merge-shards tokens/                      # → tokens/manifest.jsonl

  vidtool merge-shards parts/ -o recaptioned.jsonl"""


@app.command("merge-shards", help=HELP)
def merge_shards(
    sources: List[str] = typer.Argument(..., help="Folders holding the shard files (or shard .jsonl / .stats.json files)."),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="Merged manifest (.jsonl); default: manifest.jsonl in the first folder."),
) -> None:
    from pathlib import Path

    from stages.context import check_output, console
    from vidtool.data import shards

    if out is None:
        first = Path(sources[0])
        out = str((first if first.is_dir() else first.parent) / "manifest.jsonl")
    check_output(out, suffixes=(".jsonl",))
    report = shards.merge(sources, out)
    failed = f", {report.errors} failed items in {report.files.errors}" if report.errors else ""
    console().print(f"merged {report.shards} {report.stage} shards: {report.records} records{failed} → {report.files.manifest}")
