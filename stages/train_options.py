"""Options every training stage shares (train-vae, train-denoiser): one declaration each, so the
trainer's flags read the same everywhere."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

Preset = Annotated[str, typer.Option(help="Named configuration of the family (e.g. tiny, paper).")]
Overrides = Annotated[list[str], typer.Option("--set", help="Override a config field: KEY=VALUE (VALUE as JSON).")]
Out = Annotated[Path, typer.Option("--out", "-o", help="Output model folder.")]
Steps = Annotated[int, typer.Option(min=1, help="Optimizer updates.")]
StopAt = Annotated[int, typer.Option(min=1, help="Checkpoint and stop after this many updates; the LR and masking "
                                                 "schedules still span --steps, and --resume goes on from there.")]
BatchSize = Annotated[int, typer.Option(min=1, help="Clips per micro-batch (per process).")]
GradAccum = Annotated[int, typer.Option(min=1, help="Micro-batches per update.")]
LearningRate = Annotated[float, typer.Option(min=0, help="Peak learning rate (AdamW).")]
Warmup = Annotated[int, typer.Option(min=0, help="Warm-up updates.")]
Schedule = Annotated[str, typer.Option(help="LR decay: cosine, linear or constant.")]
Ema = Annotated[float, typer.Option(min=0, max=1, help="EMA decay of the saved weights (off if not given).")]
Frames = Annotated[int, typer.Option(min=1, help="Frames per training clip.")]
Size = Annotated[int, typer.Option(min=8, help="Square frame size.")]
Buckets = Annotated[str, typer.Option(
    metavar="HxW:FRAMES:BATCH,...",
    help="Batch clips by shape (Open-Sora's buckets): each clip goes to the largest bucket it fits (its length "
         "and pixel count reach the bucket's; then most frames, nearest aspect ratio), is resized to cover it "
         "and centre-cropped (aspect kept), and every batch holds one bucket, of that bucket's batch size. "
         "Default: one SIZExSIZE:FRAMES:BATCH-SIZE bucket that every clip is cropped into, as before.")]
ImageEvery = Annotated[int, typer.Option(
    min=1, help="Joint image/video training for the families whose paper trains on images (cm-vae, Cross-modal "
                "Video VAE §3.4): every Nth batch is its clips' frames as single images (T=1, temporal parts "
                "skipped); the paper's 8:2 video-to-image mix is 5.")]
Fps = Annotated[float, typer.Option(min=0.1, help="Resample clips to this rate (default: their own).")]
Seed = Annotated[int, typer.Option(min=0, max=2**63 - 1, help="Seed of data order, initialisation and noise.")]
CheckpointEvery = Annotated[int, typer.Option(min=1, help="Steps between checkpoints.")]
Workers = Annotated[int, typer.Option(min=0, help="DataLoader worker processes per rank (default: 0 on CPU, where "
                                                   "loading shares the cores; the CPUs per rank on GPUs, persistent).")]
Resume = Annotated[bool, typer.Option(help="Continue from OUT's saved training state (an error if it has none).")]
ResumeOrStart = Annotated[bool, typer.Option("--resume-or-start", help="Continue from OUT's saved training state "
                                                                       "if it has one, else start (job arrays, "
                                                                       "preemptible queues).")]
Strategy = Annotated[str, typer.Option(help="Under torchrun: ddp (a replica per rank) or fsdp (FSDP2: parameters, "
                                            "gradients and optimizer state sharded over ranks; for large presets).")]
ActivationCheckpointing = Annotated[bool, typer.Option(help="Recompute each block's activations in the backward pass "
                                                            "(less memory, ~30% more compute).")]
Precision = Annotated[str, typer.Option(help="Compute precision: auto (bf16 on GPUs that have it, else fp32), bf16 "
                                             "(autocast; also on CPU), fp16 (GPUs, with a gradient scaler) or fp32.")]
Deterministic = Annotated[bool, typer.Option(help="Deterministic algorithms (reproducible runs; --no-deterministic "
                                                  "lets cuDNN pick faster non-deterministic kernels).")]
Log = Annotated[list[str], typer.Option(
    "--log", metavar="tensorboard|wandb",
    help="Also log losses, LR, gradient norm, throughput, memory and validation samples to TensorBoard (event "
         "files in OUT/tensorboard) or Weights & Biases (offline, in OUT/wandb, without an API key or network); "
         "repeat for both. Needs pip install 'vidtool[log]'.")]
ValidateEvery = Annotated[int, typer.Option(
    min=1, help="Every N updates render --validate-prompts with the saved (EMA) weights into OUT/samples/step-N "
                "(an mp4 per prompt and contact-sheet.png), also sent to --log.")]
ValidatePrompts = Annotated[Path, typer.Option(help="Text file with one validation prompt per line.")]
ValidateSteps = Annotated[int, typer.Option(min=1, help="Sampling steps of the validation samples (default: the "
                                                        "family's, as `vidtool generate`).")]

# The options of a training stage that go to the trainer, by the stage's parameter names.
TRAINER = ("steps", "stop_at", "batch_size", "grad_accum", "lr", "warmup", "schedule", "ema", "seed",
           "checkpoint_every", "workers", "resume", "resume_or_start", "strategy", "activation_checkpointing",
           "precision", "deterministic", "log")


def trainer_options(values: dict) -> dict:
    """The trainer's options out of a stage's parameters (`locals()`)."""
    return {name: values[name] for name in TRAINER}


def report_buckets(plan) -> None:
    """One line on stderr: how many clips each bucket got (rank 0 speaks for the run)."""
    from stages.context import console

    if plan is not None and int(os.environ.get("RANK", "0")) == 0:
        counts = plan.counts()
        left_out = counts.pop("none")
        line = ", ".join(f"{shape} {count}" for shape, count in counts.items())
        console().print(f"clips per bucket: {line}" + (f"; {left_out} fit none and are left out" if left_out else ""))


def run_training(model, dataset, collate_fn, out: Path, *, what: str, steps: int, stop_at: int | None,
                 batch_size: int, grad_accum: int, lr: float, warmup: int, schedule: str, ema: float | None,
                 seed: int, checkpoint_every: int, workers: int | None, resume: bool, resume_or_start: bool = False,
                 strategy: str = "ddp",
                 activation_checkpointing: bool = False, precision: str = "auto", deterministic: bool = True,
                 log: list[str] = (), ctx=None, plan=None, manifests: list[Path] = (), training_set: Path | None = None,
                 validation=None) -> None:
    """Train with the shared loop and print a one-line summary; `plan` batches by bucket
    (vidtool.data.buckets.BucketPlan). `ctx` is the stage's typer.Context. Rank 0 records the run (run.json with `manifests`' digests,
    config.resolved.yaml) and feeds `log`'s backends; `validation` (stages.train_samples.Validation)
    renders samples every `validation.every` updates."""
    import sys

    from stages import run_config
    from stages.context import console, settings
    from vidtool.errors import UserError
    from vidtool.train.config import TrainConfig
    from vidtool.train.loop import train
    from vidtool.train.run_log import RunLog, record_run
    from vidtool.train.state import STATE_DIR, STATE_NAME

    saved = (Path(out) / STATE_DIR / STATE_NAME).is_file()
    if resume and resume_or_start:
        raise UserError("--resume and --resume-or-start say the same twice; keep one")
    if resume and not saved:
        raise UserError(f"--resume: {out} holds no saved training state to continue; drop --resume to start, "
                        "or pass --resume-or-start to do whichever applies")
    resume = resume or (resume_or_start and saved)

    config = TrainConfig(steps=steps, stop_at=stop_at, batch_size=batch_size, grad_accum=grad_accum, lr=lr,
                         warmup_steps=min(warmup, steps), schedule=schedule, ema_decay=ema, seed=seed,
                         checkpoint_every=checkpoint_every, num_workers=workers, resume=resume,
                         device=settings.device, strategy=strategy, activation_checkpointing=activation_checkpointing,
                         precision=precision, deterministic=deterministic,
                         validate_every=validation.every if validation else None)
    report_buckets(plan)
    run_log = None
    # A folder holding another run is refused by train() (without --resume): leave its records alone.
    taken = not resume and (out / STATE_DIR / STATE_NAME).is_file()
    if (rank0 := int(os.environ.get("RANK", "0")) == 0) and not taken:
        record_run(out, manifests=list(manifests), training_set=training_set, command=["vidtool", *sys.argv[1:]])
        options = run_config.resolved(ctx) if ctx is not None else {}
        if ctx is not None:
            run_config.save_resolved(ctx, out / "config.resolved.yaml")
        run_log = RunLog(out, list(log), name=out.name, config=options) if log else None
    on_sheet = run_log.image if run_log else None
    try:
        result = train(model, dataset, collate_fn, config, out, progress=not settings.quiet, plan=plan,
                       on_log=run_log.scalars if run_log else None,
                       validate=validation.callback(out, on_sheet) if validation else None)
    finally:
        if run_log is not None:
            run_log.close()
    if not rank0:  # under torchrun rank 0 speaks for the run
        return
    terms = ", ".join(f"{k} {v:.4g}" for k, v in result.metrics.items() if k not in ("step", "samples_seen"))
    console().print(f"trained {what} to step {result.step}: {terms}; model folder {result.out_dir}")
