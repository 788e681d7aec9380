"""`vidtool curate-sketch-dataset`: Video–Mask–Sketch–Text samples from DAVIS / YouTube-VOS (MotionAura App. C.4)."""

from __future__ import annotations

from typing import Optional

import typer

app = typer.Typer(add_completion=False)

HELP = """Build the sketch-guided inpainting data set of MotionAura (§4, App. C.4, Fig. S.9).

ROOT is a video-object-segmentation data set as it ships: DAVIS
(JPEGImages/480p/<video>/*.jpg + Annotations/480p/<video>/*.png, or
--resolution Full-Resolution) or YouTube-VOS (<split>/JPEGImages/<video>/ +
<split>/Annotations/<video>/, --split train), one palette colour per object.
Every object of every video becomes one sample: its mask sequence, a sketch
and a caption, with the video's frame folder.

Sketch: from --sketches (QuickDraw .ndjson files, or folders of Sketchy-style
PNGs named by class), the drawing whose class word is closest to the
object's class by text-embedding similarity (--clip DIR: a local CLIP text
tower; default: the bundled sentence encoder); without --sketches, the
outline of the object's mask.

Class of an object, first found wins: --classes JSON ({"bear": "bear"} or
{"dogs-jump": {"1": "dog", "2": "person"}}), YouTube-VOS meta.json, the
caption, then the video's name ("car-shadow" → "car shadow"). DAVIS names no
classes, so give --classes for multi-object videos.
Caption: --captions (JSON {video: caption} or {video: {object id: caption}},
or a manifest with `video`/`object_id`/`caption`), else "a <class>"; run
`vidtool recaption` on the output to caption the videos with a VLM.

Writes OUT/<video>/<object>.masks.npz (arrays mask and sketch, uint8 [T,H,W];
sketch: the drawing on the object's box per frame), OUT/<video>/<object>.sketch.png
and OUT/manifest.jsonl (path = frame folder, caption, mask = the npz, sketch =
the PNG, object_id, class, sketch_source, fps …). Videos with
frames lacking masks, size mismatches or empty objects are listed in
OUT/manifest.errors.jsonl and skipped. --shard I/N (or a SLURM array) does
shard I only; join with `vidtool merge-shards OUT`. Reruns skip done videos.

Examples:

  vidtool curate-sketch-dataset DAVIS/ -o davis-sketch/ --sketches quickdraw/ --classes davis-classes.json

  vidtool curate-sketch-dataset youtube-vos/ --split train -o vos-sketch/ --sketches quickdraw/ --clip clip-vit-b32/ --shard 0/8

  vidtool curate-sketch-dataset DAVIS/ -o davis-outline/          # sketches from mask outlines"""


@app.command("curate-sketch-dataset", help=HELP)
def curate(
    root: str = typer.Argument(..., help="DAVIS or YouTube-VOS root folder."),
    out: str = typer.Option(..., "--out", "-o", help="Output folder (samples and manifest)."),
    layout: str = typer.Option("auto", "--layout", help="auto, davis or youtube-vos."),
    resolution: str = typer.Option("480p", "--resolution", help="DAVIS resolution folder: 480p or Full-Resolution."),
    split: str = typer.Option("train", "--split", help="YouTube-VOS split folder."),
    sketches: Optional[str] = typer.Option(None, "--sketches", help="Sketch library: QuickDraw .ndjson file/folder or class-named image folders."),
    per_class: int = typer.Option(100, "--per-class", min=1, help="Drawings kept per library class."),
    clip: Optional[str] = typer.Option(None, "--clip", help="Local transformers CLIP folder for class matching."),
    text_encoder: Optional[str] = typer.Option(None, "--text-encoder", help="Local sentence-encoder folder (default: bundled MiniLM)."),
    captions: Optional[str] = typer.Option(None, "--captions", help="Captions: JSON or manifest (see above)."),
    classes: Optional[str] = typer.Option(None, "--classes", help="Object classes: JSON {video: class | {id: class}} or meta.json."),
    sketch_size: int = typer.Option(256, "--sketch-size", min=16, max=2048, help="Side of the sketch image."),
    min_area: float = typer.Option(0.001, "--min-area", min=0.0, max=1.0, help="Skip objects smaller than this fraction of a frame."),
    min_score: Optional[float] = typer.Option(None, "--min-score", help="Use the outline when the best class match scores below this."),
    fps: Optional[float] = typer.Option(None, "--fps", min=0.1, help="Frame rate recorded for the frames (default: DAVIS 24, YouTube-VOS 6)."),
    shard: Optional[str] = typer.Option(None, "--shard", help="I/N: do shard I of N (default: the SLURM array task)."),
    retry_errors: bool = typer.Option(False, "--retry-errors", help="Redo videos that failed before."),
) -> None:
    import hashlib
    import json

    from stages.context import resolve_device
    from stages.data_run import run_data_stage
    from vidtool.data import shards
    from vidtool.data.sketch_dataset import CurateOptions, SketchCurator, load_lookup
    from vidtool.data.sketches import SketchLibrary, TextMatcher
    from vidtool.data.vos import find_layout

    shard_at = shards.resolve_shard(shard)
    files = shards.output_files(out, "curate-sketch-dataset", shard_at, folder=True)
    found = find_layout(root, layout=layout, resolution=resolution, split=split)
    items = [shards.Item(video.name, {"path": str(video.frames_dir.resolve())}) for video in found.videos]
    videos = {video.name: video for video in found.videos}
    library = SketchLibrary(sketches, per_class=per_class) if sketches else None
    matcher = TextMatcher(library.words, clip=clip, text_encoder=text_encoder, device=resolve_device()) if library else None
    caption_table = load_lookup(captions, "caption") if captions else {}
    class_table = load_lookup(classes, "class") if classes else {}
    options = CurateOptions(sketch_size=sketch_size, min_area=min_area, min_score=min_score, fps=fps)
    curator = SketchCurator(found, files.manifest.parent, library=library, matcher=matcher, captions=caption_table,
                            classes=class_table, options=options)

    def digest(table: dict) -> str:
        return hashlib.sha256(json.dumps(table, sort_keys=True).encode()).hexdigest()[:16]

    settings = {"layout": found.kind, "library": library.digest() if library else None,
                "matcher": matcher.name if matcher else None, "captions": digest(caption_table),
                "classes": digest(class_table), "sketch_size": sketch_size, "min_area": min_area,
                "min_score": min_score, "fps": fps}
    run_data_stage(stage="curate-sketch-dataset", items=items, shard=shard_at, files=files, settings=settings,
                   process=lambda batch: [curator(videos[item.key]) for item in batch], retry_errors=retry_errors)
