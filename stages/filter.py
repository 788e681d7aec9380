"""`vidtool filter`: keep the clips of a scored manifest that pass a condition; drop near-duplicates."""

from __future__ import annotations

from typing import Optional

import typer

app = typer.Typer(add_completion=False)

HELP = """Keep the clips that pass --where and are not near-duplicates; say why each other was dropped.

--where is a condition on the manifest's numeric columns (those `vidtool score`
adds, and frames, fps, height, width …): numbers, column names, + - * / // %,
comparisons (< <= > >= == !=, chained), and/or/not, parentheses. It is parsed,
never run as Python: calls, attributes and strings are refused. A record
without a value for a column it reads is dropped ("no motion value").
--dedup N drops a clip whose phash is within N bits (of 64) of a clip kept
earlier in the manifest; the first of a group of look-alikes stays. Clips that
`vidtool score` could not read (score_error) are dropped too.

Writes OUT (the kept records) and, beside it, OUT.rejected.jsonl (or --rejected):
the dropped records with `reason` (each failed clause with the values read, or
the clip it duplicates) and `rejected_by`. A table on stderr counts kept and
dropped clips by reason.

Examples:

  vidtool filter scored.jsonl --where "motion > 0.5 and text_area < 0.02" -o kept.jsonl

  vidtool filter scored.jsonl --where "sharpness > 100 and 30 < brightness < 220" --dedup 6 -o kept.jsonl"""


@app.command("filter", help=HELP)
def filter_clips(
    manifest: str = typer.Argument(..., help="Input manifest.jsonl (usually from `vidtool score`)."),
    out: str = typer.Option(..., "--out", "-o", help="Manifest of the kept clips (.jsonl)."),
    where: Optional[str] = typer.Option(None, "--where", help='Condition, e.g. "motion > 0.5 and text_area < 0.02".'),
    dedup: Optional[int] = typer.Option(None, "--dedup", min=0, max=32, help="Drop clips within N phash bits of a kept one."),
    rejected: Optional[str] = typer.Option(None, "--rejected", help="Where the dropped records go (default: OUT.rejected.jsonl)."),
) -> None:
    from pathlib import Path

    from rich.table import Table

    from stages.context import check_output, console
    from vidtool.curation.filtering import filter_records
    from vidtool.curation.where import Where
    from vidtool.data import shards
    from vidtool.data.manifest import read_manifest, write_manifest
    from vidtool.errors import UserError

    if where is None and dedup is None:
        raise UserError("nothing to filter by: give --where CONDITION, --dedup N or both")
    condition = Where(where) if where is not None else None
    out_path = Path(out)
    rejected_path = Path(rejected) if rejected else shards.OutputFiles(out_path).manifest.with_name(
        shards.OutputFiles(out_path).stem + ".rejected.jsonl")
    check_output(out, inputs=[manifest], suffixes=(".jsonl",))
    check_output(rejected_path, inputs=[manifest], suffixes=(".jsonl",))
    if rejected_path.resolve() == out_path.resolve():
        raise UserError(f"--rejected {rejected_path} is the -o file; name another file for the dropped clips")
    result = filter_records(read_manifest(manifest), condition, dedup)
    write_manifest(out_path, [shards.rebase(r, manifest, out_path.parent) for r in result.kept])
    write_manifest(rejected_path, [shards.rebase(r, manifest, rejected_path.parent) for r in result.rejected])

    table = Table(title=f"filter {manifest}", title_justify="left")
    table.add_column("clips")
    table.add_column("count", justify="right")
    table.add_row("[green]kept[/]", str(len(result.kept)))
    for reason, count in result.counts().most_common():
        table.add_row(f"dropped: {reason}", str(count), style="red" if reason == "score error" else None)
    table.add_row("dropped (all reasons)", str(len(result.rejected)), end_section=True)
    console().print(table)
    console().print(f"kept → {out_path}, dropped → {rejected_path}", soft_wrap=True)
