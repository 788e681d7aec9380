"""`vidtool restore`: remove burned-in text and watermarks, and upscale clips (MotionAura App. C.3)."""

from __future__ import annotations

from typing import Optional

import typer

app = typer.Typer(add_completion=False)

HELP = """Repair the clips of a manifest before training: new clips and a manifest of them.

MotionAura (App. C.3) masks the watermarks of WebVid, inpaints them, then runs
video super-resolution. Each step here is optional and takes local models:

--remove-text  masks the text the detector finds (the classical detector of
               `vidtool score`, one mask for the whole clip from lines that stay
               put; or --text-detector DIR, a transformers OWL-ViT/OWLv2 folder,
               boxes over --text-threshold in every frame), grows the mask by
               --dilate pixels and fills it frame by frame: OpenCV's Telea
               inpainting, or --inpaint-model DIR (a diffusers
               StableDiffusionInpaintPipeline folder; empty prompt, --inpaint-steps,
               the same --seed on every frame). Pixels outside the mask are kept.
--upscale-model DIR
               super-resolution, frame by frame, with a transformers Swin2SR
               folder (Swin2SRForImageSuperResolution); --scale, when given, must
               be the model's own factor.

Clips keep their frame count and frame rate and are written (H.264, --crf) to
OUT/clips/<clip>.mp4; OUT/manifest.jsonl keeps each record's other fields, points
`path` at the new clip and `restored_from` at the old one, and records frames,
fps, height, width, `text_removed` (detector, inpainter, masked share) and
`upscaled` (model, scale). Clips that fail go to OUT/manifest.errors.jsonl.
--shard I/N (or a SLURM array) does shard I only: join with `vidtool merge-shards
OUT`. A killed run, rerun, restores only the clips it had not finished.

Examples:

  vidtool restore shots/manifest.jsonl -o restored/ --remove-text

  vidtool restore shots/manifest.jsonl -o restored/ --remove-text --text-detector owlv2-base-patch16-ensemble/ --inpaint-model stable-diffusion-inpainting/

  vidtool restore shots/manifest.jsonl -o restored/ --remove-text --upscale-model swin2SR-classical-sr-x2-64/ --scale 2 --shard 0/4"""


@app.command("restore", help=HELP)
def restore(
    manifest: str = typer.Argument(..., help="Input manifest.jsonl (clips, e.g. from cut-scenes)."),
    out: str = typer.Option(..., "--out", "-o", help="Output folder (clips and manifest.jsonl)."),
    remove_text: bool = typer.Option(False, "--remove-text", help="Inpaint burned-in text and watermarks."),
    text_detector: Optional[str] = typer.Option(None, "--text-detector", help="Local OWL-ViT/OWLv2 folder (default: the classical detector)."),
    text_threshold: float = typer.Option(0.1, "--text-threshold", min=0.0, max=1.0, help="Box probability that counts as text (--text-detector)."),
    dilate: int = typer.Option(4, "--dilate", min=0, max=64, help="Pixels the text mask grows by."),
    inpaint_model: Optional[str] = typer.Option(None, "--inpaint-model", help="Local diffusers StableDiffusionInpaintPipeline folder (default: OpenCV Telea)."),
    inpaint_steps: int = typer.Option(20, "--inpaint-steps", min=1, max=1000, help="Denoising steps of --inpaint-model."),
    seed: int = typer.Option(0, "--seed", min=0, max=2**63 - 1, help="Seed of --inpaint-model's noise."),
    upscale_model: Optional[str] = typer.Option(None, "--upscale-model", help="Local transformers Swin2SR folder: super-resolution."),
    scale: Optional[int] = typer.Option(None, "--scale", min=2, max=8, help="Upscale factor (must be the model's; default: the model's)."),
    crf: int = typer.Option(18, "--crf", min=0, max=51, help="H.264 quality of the clips (lower is better)."),
    shard: Optional[str] = typer.Option(None, "--shard", help="I/N: do shard I of N (default: the SLURM array task)."),
    retry_errors: bool = typer.Option(False, "--retry-errors", help="Redo clips that failed before."),
) -> None:
    from pathlib import Path

    from stages.context import resolve_device
    from stages.data_run import run_data_stage
    from vidtool.errors import UserError

    for name, value in (("--text-detector", text_detector), ("--inpaint-model", inpaint_model)):
        if value and not remove_text:
            raise UserError(f"{name} is used by --remove-text; add --remove-text")
    if scale is not None and not upscale_model:
        raise UserError("--scale needs --upscale-model DIR (a Swin2SR folder); plain resizing is not super-resolution")
    if not (remove_text or upscale_model):
        raise UserError("nothing to do: pass --remove-text, --upscale-model DIR, or both")
    if Path(out).suffix == ".jsonl":
        raise UserError(f"-o names a folder for the restored clips and their manifest, not {out}")
    if not Path(manifest).is_file():
        raise UserError(f"no such file: {manifest}")
    if Path(out).resolve() == Path(manifest).resolve().parent:
        raise UserError(f"-o {out} is the input manifest's folder: the restored clips and manifest would mix with the "
                        "clips they repair; choose another folder")

    import cv2

    from vidtool.curation.restore import DiffusionInpainter, RestoreOptions, Upscaler, restore_clip
    from vidtool.curation.text_detect import TextDetector
    from vidtool.data import shards
    from vidtool.data.manifest import read_manifest, resolve

    device = resolve_device()
    detector = TextDetector(text_detector, threshold=text_threshold, device=device) if text_detector else None
    inpainter = DiffusionInpainter(inpaint_model, steps=inpaint_steps, seed=seed, device=device) if inpaint_model else None
    upscaler = Upscaler(upscale_model, scale=scale, device=device) if upscale_model else None
    shard_at = shards.resolve_shard(shard)
    files = shards.output_files(out, "restore", shard_at, folder=True)
    items = shards.keyed(read_manifest(manifest))
    out_folder = files.manifest.parent
    if files.manifest.resolve() == Path(manifest).resolve():
        raise UserError(f"-o {out} would overwrite the input manifest {manifest}; choose another folder")
    options = RestoreOptions(remove_text=remove_text, dilate=dilate, crf=crf)

    def one(item: shards.Item) -> shards.Outcome:
        base = shards.rebase(item.record, manifest, out_folder)
        dest = out_folder / "clips" / f"{item.key}.mp4"
        source = resolve(manifest, item.record["path"])
        if dest.resolve() == Path(source).resolve():
            return shards.failure(base, f"restoring {source} would overwrite it; choose another -o")
        try:
            columns = restore_clip(source, dest, options, fps=item.record.get("fps"),
                                   detector=detector, inpainter=inpainter, upscaler=upscaler)
        except (UserError, cv2.error) as error:  # a clip that will not decode or repair is data, not a crash
            return shards.failure(base, str(error))
        return shards.Outcome(records=[{**base, "path": dest.relative_to(out_folder).as_posix(),
                                        "restored_from": base["path"], **columns}])

    settings = {**options.__dict__, "text_detector": [detector.digest, text_threshold] if detector else None,
                "inpainter": [inpainter.name, inpaint_steps, seed] if inpainter else "opencv-telea",
                "upscaler": upscaler.digest if upscaler else None}
    run_data_stage(stage="restore", items=items, shard=shard_at, files=files, settings=settings,
                   process=lambda batch: [one(item) for item in batch], retry_errors=retry_errors)
