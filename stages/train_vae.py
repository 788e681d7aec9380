"""`vidtool train-vae`: train a video autoencoder on one or more clip manifests."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(add_completion=False)

HELP = """Train a video autoencoder (mbq-vae, cm-vae, movq-temporal) on clip manifests.

The output folder is a model folder (config.json + model.safetensors) with its resume state and
metrics.jsonl beside it; checkpoints are written every --checkpoint-every steps, atomically, and on
Ctrl-C / SIGTERM, so `--resume` continues exactly where a killed run stopped. Under torchrun every
rank runs this command (DDP); only rank 0 writes.

Examples:

  vidtool make-dataset shapes -n 1000 -o data/shapes

  vidtool train-vae --family mbq-vae --data data/shapes/manifest.jsonl -o runs/mbq --steps 2000

  vidtool train-vae --family cm-vae --data data/shapes/manifest.jsonl --set gan_start_step=500 -o runs/cm --resume

  torchrun --nproc-per-node 4 -m stages.cli train-vae --family cm-vae --data d.jsonl -o runs/cm"""


@app.command("train-vae", help=HELP)
def train_vae(
    family: str = typer.Option(..., help="Model family: mbq-vae, cm-vae or movq-temporal."),
    data: list[Path] = typer.Option(..., help="Clip manifest (JSONL); repeat to mix data sets."),
    out: Path = typer.Option(..., "--out", "-o", help="Output model folder."),
    preset: str = typer.Option("tiny", help="Named configuration of the family (e.g. tiny, paper)."),
    set_: list[str] = typer.Option([], "--set", help="Override a config field: KEY=VALUE (VALUE as JSON)."),
    init: Path = typer.Option(None, help="Start from this model folder's weights (e.g. a movq-temporal image stage)."),
    steps: int = typer.Option(2000, min=1, help="Optimizer updates."),
    batch_size: int = typer.Option(8, min=1, help="Clips per micro-batch (per process)."),
    grad_accum: int = typer.Option(1, min=1, help="Micro-batches per update."),
    lr: float = typer.Option(1e-3, min=0, help="Peak learning rate (AdamW)."),
    warmup: int = typer.Option(100, min=0, help="Warm-up updates."),
    schedule: str = typer.Option("cosine", help="LR decay: cosine, linear or constant."),
    ema: float = typer.Option(None, min=0, max=1, help="EMA decay of the saved weights (off if not given)."),
    frames: int = typer.Option(16, min=1, help="Frames per training clip."),
    size: int = typer.Option(64, min=8, help="Square frame size."),
    fps: float = typer.Option(None, min=0.1, help="Resample clips to this rate (default: their own)."),
    seed: int = typer.Option(0, help="Seed of data order, initialisation and masking."),
    checkpoint_every: int = typer.Option(250, min=1, help="Steps between checkpoints."),
    workers: int = typer.Option(0, min=0, help="DataLoader worker processes."),
    resume: bool = typer.Option(False, help="Continue from OUT's saved training state."),
) -> None:
    import torch

    from stages.context import console, settings
    from vidtool.autoencoders.build import build_autoencoder
    from vidtool.data.clips import ClipDataset, collate_clips
    from vidtool.train.config import TrainConfig
    from vidtool.train.loop import train

    torch.manual_seed(seed)
    model = build_autoencoder(family, preset, set_, init)
    dataset = torch.utils.data.ConcatDataset([ClipDataset(m, frames=frames, fps=fps, size=size) for m in data])
    config = TrainConfig(steps=steps, batch_size=batch_size, grad_accum=grad_accum, lr=lr, warmup_steps=min(warmup, steps),
                         schedule=schedule, ema_decay=ema, seed=seed, checkpoint_every=checkpoint_every,
                         num_workers=workers, resume=resume, device=settings.device)
    result = train(model, dataset, collate_clips, config, out, progress=not settings.quiet)
    terms = ", ".join(f"{k} {v:.4g}" for k, v in result.metrics.items() if k not in ("step", "samples_seen"))
    console().print(f"trained {family} to step {result.step}: {terms}; model folder {result.out_dir}")
