"""`vidtool index`: a folder of videos (and sidecar captions) → a manifest with probed metadata."""

from __future__ import annotations

import typer

app = typer.Typer(add_completion=False)

HELP = """Turn a folder of your own videos into a manifest the other stages read.

Every mp4/webm/mov/mkv/avi/gif under DIR (any case, recursively; hidden files and
folders skipped) is probed with ffprobe and becomes one JSONL record: path
(relative to the manifest's folder when the video lies under it, else
absolute), frames, fps, height, width, duration, codec (and rotation, for a
phone video that has one). A caption comes from a sidecar file with the
video's stem: clip.txt (its text) or clip.json ({"caption": "..."} or
{"text": "..."}). Files that cannot be read (empty, not a video, truncated) go
to OUT.errors.jsonl with an `error` field; the stage still exits 0.

--shard I/N (or a SLURM array) probes shard I only and -o is then a folder:
join the shards with `vidtool merge-shards DIR -o OUT.jsonl`. A rerun skips
finished videos; a changed folder (files added, removed or rewritten) is
indexed afresh.

Examples:

  vidtool index my-videos/ -o my-videos/manifest.jsonl

  vidtool encode --manifest my-videos/manifest.jsonl --out-dir latents/

  vidtool index /data/raw/ -o parts/ --shard 3/16 && vidtool merge-shards parts/ -o raw.jsonl"""


@app.command("index", help=HELP)
def index(
    root: str = typer.Argument(..., help="Folder of videos (searched recursively)."),
    out: str = typer.Option(..., "--out", "-o", help="Output manifest .jsonl; with --shard, a folder for shard files."),
    workers: int = typer.Option(4, "--workers", min=1, max=64, help="ffprobe processes run at once."),
    shard: str | None = typer.Option(None, "--shard", help="I/N: do shard I of N (default: the SLURM array task)."),
    retry_errors: bool = typer.Option(False, "--retry-errors", help="Redo videos that failed before."),
) -> None:
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path

    from stages.data_run import run_data_stage
    from vidtool.data import shards
    from vidtool.data.index import find_videos, index_record
    from vidtool.errors import UserError

    root_path = Path(root).resolve()
    shard_at = shards.resolve_shard(shard)
    files = shards.output_files(out, "index", shard_at, folder=False)
    out_folder = files.manifest.parent
    videos = find_videos(root_path)
    # Size and modification time are part of the input, so a rewritten file is not taken from the journal.
    items = shards.keyed([{"path": video.as_posix(), "size": (root_path / video).stat().st_size,
                           "mtime_ns": (root_path / video).stat().st_mtime_ns} for video in videos])

    def one(item: shards.Item) -> shards.Outcome:
        video = root_path / item.record["path"]
        placed = shards.rebase({"path": str(video)}, root_path / "manifest.jsonl", out_folder)
        try:
            return shards.Outcome(records=[{**placed, **index_record(video)}])
        except UserError as error:
            return shards.failure(placed, str(error))

    with ThreadPoolExecutor(workers) as pool:  # each probe waits on an ffprobe process, so threads overlap them
        run_data_stage(stage="index", items=items, shard=shard_at, files=files, settings={"root": str(root_path)},
                       process=lambda batch: list(pool.map(one, batch)), batch=4 * workers, retry_errors=retry_errors)
