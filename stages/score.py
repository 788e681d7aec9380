"""`vidtool score`: add per-clip quality columns (motion, sharpness, brightness, hash, text area, aesthetic)."""

from __future__ import annotations

from typing import Optional

import typer

app = typer.Typer(add_completion=False)

HELP = """Measure every clip of a manifest and add the measures as columns.

Columns, from --pairs frame pairs spread over each clip (frames resized to a
short side of --size, so clips of any resolution compare):
  motion       mean optical-flow magnitude (OpenCV Farneback), pixels per
               frame at a short side of 128: ~0 still, 1-3 a steady pan
  sharpness    variance of the Laplacian (blur lowers it)
  brightness   mean luma, 0-255
  phash        perceptual hash of the middle frame (for `filter --dedup`)
  text_area    fraction of the frame covered by text lines that stay put
               while the scene moves (burned-in captions, watermarks):
               a classical morphological detector, no model; with
               --text-detector DIR (a local transformers OWL-ViT/OWLv2
               folder), the share of the frame under the boxes the model
               finds for "text", "caption", "subtitles", "watermark", "logo"
               with a probability over --text-threshold, averaged over the
               frames
  aesthetic    only with --clip-model DIR (a local transformers CLIP folder):
               CLIP-IQA's zero-shot score, the probability CLIP gives
               "a beautiful, high quality photo." / "good photo." over
               "an ugly, low quality photo." / "bad photo.", averaged over
               the frames (0.5: undecided). Not a trained aesthetic predictor.

A clip that cannot be read keeps its record with a `score_error` column (and
is listed in OUT.errors.jsonl); `vidtool filter` drops it with that reason.
--shard I/N (or a SLURM array) does shard I only and -o is then a folder: join
with `vidtool merge-shards DIR -o OUT.jsonl`. A killed run, rerun, scores only
the clips it had not finished.

Examples:

  vidtool score shots/manifest.jsonl -o scored.jsonl

  vidtool score shots/manifest.jsonl -o scored.jsonl --clip-model clip-vit-base-patch32/

  vidtool score shots/manifest.jsonl -o scored.jsonl --text-detector owlv2-base-patch16-ensemble/ --text-threshold 0.2

  vidtool filter scored.jsonl --where "motion > 0.5 and text_area < 0.02" --dedup 6 -o kept.jsonl"""


@app.command("score", help=HELP)
def score(
    manifest: str = typer.Argument(..., help="Input manifest.jsonl (clips, e.g. from cut-scenes)."),
    out: str = typer.Option(..., "--out", "-o", help="Output manifest .jsonl; with --shard, a folder for shard files."),
    pairs: int = typer.Option(4, "--pairs", min=1, max=64, help="Frame pairs read per clip."),
    size: int = typer.Option(256, "--size", min=32, max=2048, help="Short side the frames are measured at."),
    clip_model: Optional[str] = typer.Option(None, "--clip-model", help="Local transformers CLIP folder: adds `aesthetic`."),
    text_detector: Optional[str] = typer.Option(None, "--text-detector", help="Local OWL-ViT/OWLv2 folder: `text_area` from its boxes."),
    text_threshold: float = typer.Option(0.1, "--text-threshold", min=0.0, max=1.0, help="Box probability that counts as text (--text-detector)."),
    shard: Optional[str] = typer.Option(None, "--shard", help="I/N: do shard I of N (default: the SLURM array task)."),
    retry_errors: bool = typer.Option(False, "--retry-errors", help="Redo clips that failed before."),
) -> None:
    from stages.context import check_output, resolve_device
    from stages.data_run import run_data_stage
    from vidtool.curation import require_extra
    from vidtool.curation.aesthetic import AestheticScorer
    from vidtool.curation.filtering import ERROR_COLUMN
    from vidtool.curation.scores import ScoreOptions, score_clip
    from vidtool.curation.text_detect import TextDetector
    from vidtool.data import shards
    from vidtool.data.manifest import read_manifest, resolve
    from vidtool.errors import UserError

    require_extra("score", "imagehash")
    shard_at = shards.resolve_shard(shard)
    if shard_at is None:
        check_output(out, inputs=[manifest], suffixes=(".jsonl",))
    files = shards.output_files(out, "score", shard_at, folder=False)
    items = shards.keyed(read_manifest(manifest))
    options = ScoreOptions(pairs=pairs, size=size)
    aesthetic = AestheticScorer(clip_model, device=resolve_device()) if clip_model else None
    detector = TextDetector(text_detector, threshold=text_threshold, device=resolve_device()) if text_detector else None
    out_folder = files.manifest.parent

    import cv2

    def one(item: shards.Item) -> shards.Outcome:
        base = {key: value for key, value in shards.rebase(item.record, manifest, out_folder).items() if key != ERROR_COLUMN}
        try:
            path = resolve(manifest, item.record["path"])
            columns = score_clip(path, options, fps=item.record.get("fps"), aesthetic=aesthetic,
                                 text_detector=detector)
        except (UserError, cv2.error) as error:  # a clip that will not decode or measure is data, not a crash
            failed = {**base, ERROR_COLUMN: str(error)}
            return shards.Outcome(records=[failed], errors=[{**base, "error": str(error)}])
        return shards.Outcome(records=[{**base, **columns}])

    settings = {**options.__dict__, "clip_model": aesthetic.digest if aesthetic else None,
                **({"text_detector": [detector.digest, text_threshold]} if detector else {})}
    run_data_stage(stage="score", items=items, shard=shard_at, files=files, settings=settings,
                   process=lambda batch: [one(item) for item in batch], retry_errors=retry_errors)
