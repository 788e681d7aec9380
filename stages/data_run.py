"""How the sharded data stages run in a terminal: a progress display (items/s, ETA, failures so far),
resume messages, and a summary table at the end."""

from __future__ import annotations


def run_data_stage(*, stage: str, items, shard, files, settings: dict, process, batch: int = 1,
                   retry_errors: bool = False):
    """`vidtool.data.shards.run_stage` with a progress display and messages on stderr; returns its report."""
    import time

    from stages.context import console, progress_bar
    from vidtool.data import shards

    total = len((shard or shards.Shard()).range(len(items)))
    where = f" (shard {shard})" if shard else ""
    began = time.perf_counter()
    with progress_bar(f"{stage}{where}", total, errors=True) as done:
        report = shards.run_stage(stage=stage, items=items, shard=shard, files=files, settings=settings,
                                  process=process, batch=batch, retry_errors=retry_errors, progress=done,
                                  log=lambda message: console().print(message))
    if not report.already_done:
        print_summary(f"{stage}{where}", report, time.perf_counter() - began)
    return report


def print_summary(title: str, report, seconds: float) -> None:
    """A table on stderr: items, what was resumed and done, records written, failures, speed, where."""
    from rich.table import Table

    from stages.context import console, format_seconds

    table = Table(title=title, title_justify="left", show_header=False, box=None, padding=(0, 2))
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")  # paths are shown whole, folded onto more lines, not cut short
    rate = f" ({report.processed / seconds:.2f} items/s)" if report.processed and seconds > 0 else ""
    rows = [("items", report.items), ("done before (journal)", report.resumed),
            ("done now", f"{report.processed} in {format_seconds(seconds)}{rate}"),
            ("records written", report.records)]
    if report.errors:
        rows.append(("failed", f"[red]{report.errors}[/] (see {report.files.errors})"))
    rows.append(("output", str(report.files.manifest)))
    for name, value in rows:
        table.add_row(name, str(value))
    console().print(table)
