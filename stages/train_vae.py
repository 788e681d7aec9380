"""`vidtool train-vae`: train a video autoencoder on one or more clip manifests."""

from __future__ import annotations

from pathlib import Path

import typer

from stages import train_options as opt

app = typer.Typer(add_completion=False)

HELP = """Train a video autoencoder (mbq-vae, cm-vae, mcd-vae, movq-temporal) on clip manifests.

The output folder is a model folder (config.json + model.safetensors) with its resume state and
metrics.jsonl beside it; checkpoints are written every --checkpoint-every steps, atomically, and on
Ctrl-C / SIGTERM, so `--resume` continues exactly where a killed run stopped. Under torchrun every
rank runs this command (DDP, or FSDP2 sharding with --strategy fsdp for the large presets); only
rank 0 writes, and a run saved on N processes resumes on any number.

Examples:

  vidtool make-dataset shapes -n 1000 -o data/shapes

  vidtool train-vae --family mbq-vae --data data/shapes/manifest.jsonl -o runs/mbq --steps 2000

  vidtool train-vae --family cm-vae --data data/shapes/manifest.jsonl --set gan_start_step=500 -o runs/cm --resume

  vidtool train-vae --family mcd-vae --data data/shapes/manifest.jsonl --frames 8 --fps 4 -o runs/mcd-vae   # LaMD

Mixed sizes and lengths: --buckets HxW:FRAMES:BATCH,... batches clips by shape instead of cropping
them all to one --size square (see --buckets below); --image-every 5 mixes in image batches (cm-vae):

  vidtool train-vae --family cm-vae --data data/shapes/manifest.jsonl --data data/photos/manifest.jsonl \
    --buckets 64x64:16:8,48x80:16:8,32x32:32:8 --image-every 5 -o runs/cm-mixed

  torchrun --nproc-per-node 4 -m stages.cli train-vae --family cm-vae --data d.jsonl -o runs/cm

  torchrun --nproc-per-node 8 -m stages.cli train-vae --family cm-vae --preset 16ch --data d.jsonl -o runs/cm16 \
    --strategy fsdp --activation-checkpointing"""


@app.command("train-vae", help=HELP)
def train_vae(
    ctx: typer.Context,
    family: str = typer.Option(..., help="Model family: mbq-vae, cm-vae, mcd-vae or movq-temporal."),
    data: list[Path] = typer.Option(..., help="Clip manifest (JSONL); repeat to mix data sets."),
    out: opt.Out = ...,
    preset: opt.Preset = "tiny",
    set_: opt.Overrides = [],
    init: Path = typer.Option(None, help="Start from this model folder's weights (e.g. a movq-temporal image stage)."),
    steps: opt.Steps = 2000,
    stop_at: opt.StopAt = None,
    batch_size: opt.BatchSize = 8,
    grad_accum: opt.GradAccum = 1,
    lr: opt.LearningRate = 1e-3,
    warmup: opt.Warmup = 100,
    schedule: opt.Schedule = "cosine",
    ema: opt.Ema = None,
    frames: opt.Frames = 16,
    size: opt.Size = 64,
    buckets: opt.Buckets = None,
    image_every: opt.ImageEvery = None,
    fps: opt.Fps = None,
    seed: opt.Seed = 0,
    checkpoint_every: opt.CheckpointEvery = 250,
    workers: opt.Workers = None,
    resume: opt.Resume = False,
    resume_or_start: opt.ResumeOrStart = False,
    strategy: opt.Strategy = "ddp",
    activation_checkpointing: opt.ActivationCheckpointing = False,
    precision: opt.Precision = "auto",
    deterministic: opt.Deterministic = True,
    log: opt.Log = [],
) -> None:
    import torch

    from vidtool.autoencoders.build import build_autoencoder
    from vidtool.data.buckets import (
        Bucket,
        BucketPlan,
        assign_buckets,
        check_divisible,
        parse_buckets,
    )
    from vidtool.data.clips import ClipDataset, ClipSets, collate_clips
    from vidtool.errors import UserError
    from vidtool.train.parallel import build_device

    torch.manual_seed(seed)
    with build_device(strategy):  # FSDP ranks other than 0 build on the meta device
        model = build_autoencoder(family, preset, set_, init)
    if image_every is not None and not getattr(model, "joint_image_training", False):
        raise UserError(f"--image-every is for the families that train on images too (cm-vae); {family} takes "
                        "video batches only")
    dataset = ClipSets([ClipDataset(m, frames=frames, fps=fps, size=size) for m in data])
    plan = None
    if buckets is not None or image_every is not None:
        shapes = parse_buckets(buckets) if buckets else [Bucket(size, size, frames, batch_size)]
        check_divisible(shapes, model.spatial_factor, model.temporal_factor, f"a {family} model",
                        images=getattr(model, "joint_image_training", False))
        plan = BucketPlan(shapes, assign_buckets(dataset.shapes(), shapes, fps), seed, image_every)
    opt.run_training(model, dataset, collate_clips, out, what=family, plan=plan, manifests=data,
                     ctx=ctx, **opt.trainer_options(locals()))
