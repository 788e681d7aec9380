"""How the sharded data stages run in a terminal: a progress bar, resume messages, a summary line."""

from __future__ import annotations


def run_data_stage(*, stage: str, items, shard, files, settings: dict, process, batch: int = 1,
                   retry_errors: bool = False):
    """`vidtool.data.shards.run_stage` with a progress bar and messages on stderr; returns its report."""
    from stages.context import console, progress_bar
    from vidtool.data import shards

    total = len((shard or shards.Shard()).range(len(items)))
    where = f" (shard {shard})" if shard else ""
    with progress_bar(f"{stage}{where}", total) as done:
        report = shards.run_stage(stage=stage, items=items, shard=shard, files=files, settings=settings,
                                  process=process, batch=batch, retry_errors=retry_errors, progress=done,
                                  log=lambda message: console().print(message))
    if not report.already_done:
        failed = f", {report.errors} failed (see {report.files.errors})" if report.errors else ""
        console().print(f"{stage}{where}: {report.records} records from {report.items} items, "
                        f"{report.resumed} done before{failed} → {report.files.manifest}")
    return report
