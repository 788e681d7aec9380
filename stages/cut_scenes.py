"""`vidtool cut-scenes`: split long videos into shot clips (PySceneDetect finds the cuts, ffmpeg cuts)."""

from __future__ import annotations

from typing import Optional

import typer

app = typer.Typer(add_completion=False)

HELP = """Split videos into shots: one clip per shot, and a manifest of the clips.

VIDEOS is a folder of videos (searched recursively, as `vidtool index` does), one
video file, or a manifest (.jsonl). PySceneDetect finds the cuts on its OpenCV
backend: --detector adaptive (default; AdaptiveDetector, robust to fast camera
motion) or content (ContentDetector, a fixed threshold). --threshold replaces
the detector's own (adaptive 3.0, content 27.0); --min-frames is the shortest
shot (no cut closer than that to the previous one).

Every shot is re-encoded frame-exactly (H.264, --crf, no audio) to
OUT/clips/<video>/NNNN.mp4, and OUT/manifest.jsonl gets one record per shot:
path, source (the video), shot, start_frame, end_frame (exclusive, at the
source's own frame numbering), start/end seconds, frames, fps, height, width,
plus the source record's other fields (a caption, a label). Videos that cannot
be read go to OUT/manifest.errors.jsonl with an `error` field.

--shard I/N (or a SLURM array) does shard I only: join the shards with
`vidtool merge-shards OUT`. A rerun skips finished videos.

Examples:

  vidtool cut-scenes raw-videos/ -o shots/

  vidtool score shots/manifest.jsonl -o scored.jsonl

  vidtool cut-scenes raw.jsonl -o shots/ --detector content --threshold 30 --shard 0/8"""


@app.command("cut-scenes", help=HELP)
def cut_scenes(
    videos: str = typer.Argument(..., help="Folder of videos, a video file, or a manifest .jsonl."),
    out: str = typer.Option(..., "--out", "-o", help="Output folder (shot clips and manifest.jsonl)."),
    detector: str = typer.Option("adaptive", "--detector", help="adaptive or content (PySceneDetect detectors)."),
    threshold: Optional[float] = typer.Option(None, "--threshold", min=0.0, help="Detector threshold (default: the detector's)."),
    min_frames: int = typer.Option(15, "--min-frames", min=1, help="Shortest shot, in frames."),
    crf: int = typer.Option(18, "--crf", min=0, max=51, help="H.264 quality of the clips (lower is better)."),
    shard: Optional[str] = typer.Option(None, "--shard", help="I/N: do shard I of N (default: the SLURM array task)."),
    retry_errors: bool = typer.Option(False, "--retry-errors", help="Redo videos that failed before."),
) -> None:
    from pathlib import Path

    from stages.data_run import run_data_stage
    from vidtool.curation.shots import DETECTORS, ShotOptions, cut_video, video_items
    from vidtool.data import shards
    from vidtool.data.manifest import resolve
    from vidtool.curation import require_extra
    from vidtool.errors import UserError

    require_extra("cut-scenes", "scenedetect")
    if detector not in DETECTORS:
        raise UserError(f"--detector must be one of {', '.join(DETECTORS)}, got {detector!r}")
    if Path(out).suffix == ".jsonl":
        raise UserError(f"-o names a folder for the shot clips and their manifest, not {out}")
    shard_at = shards.resolve_shard(shard)
    files = shards.output_files(out, "cut-scenes", shard_at, folder=True)
    records, source_manifest = video_items(videos)
    items = shards.keyed(records)
    out_folder = files.manifest.parent
    options = ShotOptions(detector=detector, threshold=threshold, min_frames=min_frames, crf=crf)

    def one(item: shards.Item) -> shards.Outcome:
        base = shards.rebase(item.record, source_manifest, out_folder)
        try:
            return shards.Outcome(records=cut_video(resolve(source_manifest, item.record["path"]), base,
                                                    out_folder / "clips" / item.key, out_folder, options))
        except UserError as error:
            return shards.failure(base, str(error))

    run_data_stage(stage="cut-scenes", items=items, shard=shard_at, files=files, settings=options.__dict__,
                   process=lambda batch: [one(item) for item in batch], retry_errors=retry_errors)
