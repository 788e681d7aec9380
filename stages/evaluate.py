"""`vidtool evaluate`: video metrics by their published protocols, offline, as JSON plus a table."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

app = typer.Typer(add_completion=False)

HELP = """Measure a generated set (against a reference set) with standard video metrics.

Sets: a folder of mp4s and/or video tensor files, a manifest.jsonl (captions are
the prompts), or a .safetensors file ('video'; 'tokens' for codebook stats).
Paired metrics (psnr, ssim, lpips) compare video i with reference video i and
refuse sets that differ in size or length: they never resize.

Metrics: psnr, ssim, lpips, fvd, cd-fvd, isv, clipsim, temporal-flickering,
dynamic-degree, motion-smoothness, shapes-probe, codebook. Without --metric,
every metric the inputs allow runs; those needing weights you did not give are
reported as unavailable. Weights are local files only: --i3d (StyleGAN-V
i3d_torchscript.pt), --videomae (transformers VideoMAE folder, for cd-fvd),
--c3d (c3d_ucf101.pt), --clip (transformers CLIP folder),
--lpips-backbone (torchvision alexnet/vgg16 .pth) and --lpips-heads (v0.1).

The JSON gives, beside every number, its protocol, the model file digests, the
sample counts, the resolution and the frame count. PSNR of identical frames is
reported as 100 dB. dynamic-degree and motion-smoothness use OpenCV Farneback
flow instead of RAFT/AMT: not comparable with VBench numbers.
--dtype auto is fp32 here, the precision metrics are published in;
--dtype bf16 runs LPIPS, CLIP and VideoMAE faster (the report says
so); the TorchScript I3D and C3D always run in fp32.

Large sets: --shard I/N (or a SLURM job array) writes the per-video rows of
shard I into the folder -o; --merge turns all shards into the numbers of one
unsharded run. --cache DIR keeps I3D/VideoMAE/C3D features per video for reruns.

Examples:

  vidtool evaluate decoded/ --ref data/shapes/manifest.jsonl -o rec.json --plot plots/

  vidtool evaluate gen/manifest.jsonl --metric shapes-probe -o probe.json

  vidtool evaluate gen/ --ref real/ --metric fvd --i3d i3d_torchscript.pt -o fvd.json

  vidtool evaluate gen/ --ref real/ --metric cd-fvd --videomae videomae-v2-ssv2/ -o cdfvd.json

  vidtool evaluate gen/ --ref real/ -m fvd --i3d i3d.pt --shard 3/8 -o parts/

  vidtool evaluate --merge parts/ -o fvd.json"""


@app.command("evaluate", help=HELP)
def evaluate(
    generated: Optional[str] = typer.Argument(None, help="The set to measure (folder, manifest.jsonl or .safetensors)."),
    ref: Optional[str] = typer.Option(None, "--ref", help="Reference set: paired for psnr/ssim/lpips, a distribution for fvd."),
    metric: List[str] = typer.Option([], "--metric", "-m", help="A metric to compute (repeatable); default: all that apply."),
    out: str = typer.Option("-", "--out", "-o", help="results.json (or - for stdout); with --shard, a folder for shard files."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Folder for PNG plots (per-frame PSNR/SSIM, flicker over time)."),
    shard: Optional[str] = typer.Option(None, "--shard", help="I/N: compute only shard I of N and write its rows to -o FOLDER."),
    merge: List[Path] = typer.Option([], "--merge", help="Shard files or folders to merge into one report (repeatable)."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Folder caching per-video I3D/VideoMAE/C3D features."),
    i3d: Optional[str] = typer.Option(None, "--i3d", help="I3D TorchScript file (StyleGAN-V i3d_torchscript.pt) for fvd."),
    fvd_variant: str = typer.Option("16f", "--fvd-variant", help="16f, 128f or 128f_subsample8f (StyleGAN-V names)."),
    fvd_videos: int = typer.Option(2048, "--fvd-videos", min=2, help="At most this many videos per set (fvd, cd-fvd)."),
    videomae: Optional[str] = typer.Option(None, "--videomae", help="Local transformers VideoMAE folder for cd-fvd."),
    c3d: Optional[str] = typer.Option(None, "--c3d", help="C3D TorchScript file (StyleGAN-V c3d_ucf101.pt) for isv."),
    isv_videos: int = typer.Option(2048, "--isv-videos", min=1, help="Use at most this many videos for isv."),
    isv_splits: int = typer.Option(10, "--isv-splits", min=1, help="Splits for the inception score."),
    clip: Optional[str] = typer.Option(None, "--clip", help="Local transformers CLIP folder for clipsim (e.g. ViT-B/32)."),
    clip_x100: bool = typer.Option(False, "--clip-x100", help="Report clipsim as 100 x cosine."),
    lpips_backbone: Optional[str] = typer.Option(None, "--lpips-backbone", help="torchvision alexnet/vgg16 state dict (.pth)."),
    lpips_heads: Optional[str] = typer.Option(None, "--lpips-heads", help="lpips v0.1 linear heads (alex.pth/vgg.pth)."),
    codebook_size: Optional[int] = typer.Option(None, "--codebook-size", min=1, help="Codebook size for codebook stats."),
    model: Optional[str] = typer.Option(None, "--model", help="Tokenizer folder whose config gives the codebook size."),
    batch: int = typer.Option(8, "--batch", min=1, help="Videos per batch for the feature networks."),
) -> None:
    from stages.context import check_output, console, progress_bar, resolve_device, resolve_dtype
    from vidtool.data.shards import parse_shard, shard_from_env
    from vidtool.errors import UserError
    from vidtool.metrics import evaluation, rows as row_files
    from vidtool.metrics.report import build_report
    from vidtool.metrics.video_sets import open_set

    if merge:
        if generated or shard or ref or metric:
            raise UserError("--merge combines finished shards as they were run; give it no set, --ref, --metric or --shard")
        check_output(out, suffixes=(".json",))
        rows, setup = row_files.merge_shards([str(p) for p in merge])
        _finish(build_report(rows, setup), out, plot)
        return
    if not generated:
        raise UserError("no set to evaluate: give GENERATED (a folder, manifest.jsonl or .safetensors), or --merge")
    if not shard and (array_task := shard_from_env()) is not None:
        shard = str(array_task)  # a SLURM job array task evaluates its own shard, as --shard I/N would
    shard_at = parse_shard(shard) if shard else (0, 1)
    if shard and (out == "-" or Path(out).suffix == ".json"):
        raise UserError("with --shard, -o names a folder for the shard file (e.g. -o parts/); merge with --merge parts/")
    if not shard:
        check_output(out, inputs=[generated, ref], suffixes=(".json",))
    config = evaluation.EvaluateConfig(
        metrics=tuple(metric), i3d=i3d, fvd_variant=fvd_variant, fvd_videos=fvd_videos, videomae=videomae, c3d=c3d,
        isv_videos=isv_videos, isv_splits=isv_splits, clip=clip, clip_x100=clip_x100, lpips_backbone=lpips_backbone,
        lpips_heads=lpips_heads, codebook_size=codebook_size, model=model, cache=str(cache) if cache else None,
        batch=batch, device=(device := resolve_device()),
        dtype=str(resolve_dtype(device, auto="fp32")).removeprefix("torch."))  # auto: as the metrics were published
    gen_set = open_set(generated)
    ref_set = open_set(ref) if ref else None
    plan, nets, setup = evaluation.prepare(config, gen_set, ref_set)
    if shard and (done_file := row_files.finished_shard(out, *shard_at, setup)) is not None:
        console().print(f"shard {shard} already done: {done_file}")
        return
    total = evaluation.work_count(setup, gen_set, ref_set, shard_at)
    with progress_bar(f"evaluate {', '.join(plan.metrics) or 'nothing'}", total) as done:
        rows = evaluation.compute_rows(config, setup, nets, gen_set, ref_set, shard_at, done)
    if shard:
        path = row_files.save_shard(rows, setup, *shard_at, out)
        console().print(f"wrote shard {shard} ({len(rows.keys['generated'])} generated, "
                        f"{len(rows.keys['reference'])} reference videos): {path}")
        return
    _finish(build_report(rows, setup), out, plot)


def _finish(report: dict, out: str, plot: Optional[Path]) -> None:
    import json
    import sys

    from stages.context import console
    from vidtool import __version__
    from vidtool.atomic import atomic_write_text
    from vidtool.metrics.report_display import report_table, write_plots

    report = {"vidtool": {"stage": "evaluate", "version": __version__}, **report}
    err = console()
    if not err.is_terminal:  # a log file or CI capture: give the table room instead of Rich's 80 columns
        err.width = 120
    err.print(report_table(report))
    text = json.dumps(report, indent=2) + "\n"
    if out == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        atomic_write_text(out, text)
    if plot:
        for path in write_plots(report, plot):
            console().print(f"plot: {path}")

