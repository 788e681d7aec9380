"""`vidtool train-denoiser`: train a diffusion generator in the latent space of an autoencoder."""

from __future__ import annotations

from pathlib import Path

import typer

from stages import train_options as opt

app = typer.Typer(add_completion=False)

HELP = """Train a latent diffusion generator: the text-to-image base (t2i) or a video family built on a
frozen one (keyframes, interp, harivo).

Clips are encoded once by the autoencoder (--vae, default the bundled one) and their captions by the
text encoder; the result is cached as a latent set (--latent-set, default OUT/latent-set.safetensors)
that reruns and --resume reuse. The video families need --base, the trained t2i folder they freeze.
Checkpoints, --resume and torchrun work as in train-vae.

Examples:

  vidtool train-denoiser --family t2i --data data/shapes/manifest.jsonl --data data/photos/manifest.jsonl -o runs/t2i

  vidtool train-denoiser --family keyframes --base runs/t2i --latent-set runs/t2i/latent-set.safetensors -o runs/keyframes

  vidtool train-denoiser --family interp --base runs/t2i --latent-set runs/t2i/latent-set.safetensors -o runs/interp"""


@app.command("train-denoiser", help=HELP)
def train_denoiser(
    family: str = typer.Option(..., help="Generator family: t2i, keyframes, interp or harivo."),
    data: list[Path] = typer.Option([], help="Clip manifest (JSONL) to encode; repeat to mix data sets."),
    latent_set: Path = typer.Option(None, help="Latent set file: read if it exists, else built from --data "
                                                "(default OUT/latent-set.safetensors)."),
    vae: Path = typer.Option(None, help="Autoencoder folder whose latent space to use (default: the bundled one)."),
    base: Path = typer.Option(None, help="Trained t2i model folder that the video families freeze and extend."),
    text_encoder: Path = typer.Option(None, help="Local transformers text-encoder folder (default all-MiniLM-L6-v2)."),
    out: opt.Out = ...,
    preset: opt.Preset = "tiny",
    set_: opt.Overrides = [],
    steps: opt.Steps = 2000,
    batch_size: opt.BatchSize = 16,
    grad_accum: opt.GradAccum = 1,
    lr: opt.LearningRate = 1e-4,
    warmup: opt.Warmup = 100,
    schedule: opt.Schedule = "cosine",
    ema: opt.Ema = None,
    frames: opt.Frames = 16,
    size: opt.Size = 64,
    fps: opt.Fps = None,
    seed: opt.Seed = 0,
    checkpoint_every: opt.CheckpointEvery = 250,
    workers: opt.Workers = 0,
    resume: opt.Resume = False,
) -> None:
    import torch

    from stages.context import progress_bar, resolve_device
    from vidtool.data.latents import LatentDataset, build_latent_set
    from vidtool.errors import UserError
    from vidtool.generators.build import build_generator
    from vidtool.model_store import default_model

    latent_set = latent_set or out / "latent-set.safetensors"
    if not latent_set.is_file():
        if not data:
            raise UserError(f"no latent set at {latent_set}: pass --data MANIFEST to build it (or --latent-set FILE)")
        vae_folder = vae or default_model("encode")
        with progress_bar("encoding clips", None) as done:
            build_latent_set(list(data), vae_folder, latent_set, frames=frames, size=size, fps=fps,
                             text_encoder_path=text_encoder, device=resolve_device(), progress=done)
    dataset = LatentDataset(latent_set)
    if vae is not None:
        from vidtool.checkpoint import model_tag

        if model_tag(vae) != dataset.info.vae:
            raise UserError(f"{latent_set} was encoded by {dataset.info.vae}, not by --vae {vae}; "
                            "pass another --latent-set path to build a new one")
    torch.manual_seed(seed)
    model = build_generator(family, preset, set_, base, dataset.info)
    if base is not None and getattr(model.config, "vae", dataset.info.vae) != dataset.info.vae:
        raise UserError(f"--base {base} was trained on latents of {model.config.vae}, the latent set holds "
                        f"{dataset.info.vae}'s; use the latent set the base was trained on")
    opt.run_training(model, dataset, None, out, what=family, steps=steps, batch_size=batch_size, grad_accum=grad_accum,
                     lr=lr, warmup=warmup, schedule=schedule, ema=ema, seed=seed, checkpoint_every=checkpoint_every,
                     workers=workers, resume=resume)
