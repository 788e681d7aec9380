"""`vidtool train-denoiser`: train a diffusion generator in the latent space of an autoencoder."""

from __future__ import annotations

from pathlib import Path

import typer

from stages import train_options as opt

app = typer.Typer(add_completion=False)

HELP = """Train a generator: a latent diffusion model (the text-to-image base t2i, or a video family
built on a frozen one: keyframes, interp, harivo), or MotionAura's spectral transformer over
tokenizer ids (spectral) and its sketch-inpainting LoRA (spectral-inpaint, on a frozen spectral).

Clips are encoded once by the autoencoder (--vae, default the bundled one) and their captions by the
text encoder; the result is cached as a latent set (--latent-set, default OUT/latent-set.safetensors)
that reruns and --resume reuse. The video families need --base, the trained t2i folder they freeze,
or a Stable Diffusion or Kandinsky 3 pipeline folder (diffusers layout; its vae/ or movq/ and
text_encoder/ are then the defaults for --vae and --text-encoder).
The token families tokenize clips with --tokenizer (default mbq-vae-tiny-v1, the bundled MotionAura
models' 2^10-code token space) into a token set
(--token-set, default OUT/token-set.safetensors); spectral-inpaint also reads each clip's object
masks and sketch from the manifest and needs --base, the spectral model it adapts.
Checkpoints, --resume and torchrun work as in train-vae.

Mixed sizes and lengths (latent families): with --buckets each clip is encoded at its bucket's shape
into a bucketed latent set, and every batch holds one bucket; a bucketed set remembers its shapes,
so later runs on it need --buckets only to change the batch sizes:

  vidtool train-denoiser --family t2i --data data/shapes/manifest.jsonl --buckets 64x64:1:16,48x80:1:16 -o runs/t2i-mixed

Examples:

  vidtool train-denoiser --family t2i --data data/shapes/manifest.jsonl --data data/photos/manifest.jsonl -o runs/t2i

  vidtool train-denoiser --family keyframes --base runs/t2i --latent-set runs/t2i/latent-set.safetensors -o runs/keyframes

  vidtool train-denoiser --family interp --base runs/t2i --latent-set runs/t2i/latent-set.safetensors -o runs/interp

  vidtool train-denoiser --family harivo --base models/sd15 --data data/shapes/manifest.jsonl --size 512 -o runs/harivo-sd

  vidtool train-denoiser --family spectral --data data/shapes/manifest.jsonl --frames 8 -o runs/spectral

  vidtool train-denoiser --family spectral-inpaint --base runs/spectral --data data/shapes/manifest.jsonl --frames 8 -o runs/inpaint

  vidtool train-denoiser --family dmg --vae runs/mcd-vae --data data/shapes/manifest.jsonl --fps 4 -o runs/dmg

Watching a run: --log tensorboard (or wandb) and sample videos every N updates into OUT/samples/step-N;
--config FILE holds any of these options (flags win), OUT/config.resolved.yaml records them:

  vidtool train-denoiser --family keyframes --base runs/t2i --latent-set runs/t2i/latent-set.safetensors --log tensorboard --validate-every 100 --validate-prompts prompts.txt -o runs/keyframes

  vidtool train-denoiser --config runs/keyframes/config.resolved.yaml --steps 4000 --resume"""


@app.command("train-denoiser", help=HELP)
def train_denoiser(
    ctx: typer.Context,
    family: str = typer.Option(..., help="Generator family: t2i, keyframes, interp, harivo, spectral or spectral-inpaint."),
    data: list[Path] = typer.Option([], help="Clip manifest (JSONL) to encode; repeat to mix data sets."),
    latent_set: Path = typer.Option(None, help="Latent set file: read if it exists, else built from --data "
                                                "(default OUT/latent-set.safetensors)."),
    vae: Path = typer.Option(None, help="Autoencoder folder whose latent space to use: a vidtool one or a diffusers "
                                        "AutoencoderKL or VQModel (default: the bundled one, or --base's vae/ or movq/)."),
    tokenizer: Path = typer.Option(None, help="Tokenizer folder (mbq-vae) of the token families "
                                              "(default: mbq-vae-tiny-v1, the bundled generators' ids)."),
    token_set: Path = typer.Option(None, help="Token set file of the token families: read if it exists, else built from "
                                              "--data (default OUT/token-set.safetensors)."),
    base: Path = typer.Option(None, help="Trained model folder the family freezes and extends (t2i for the video "
                                         "families, spectral for spectral-inpaint); for the video families also a "
                                         "Stable Diffusion pipeline folder (diffusers) or its unet/."),
    init: Path = typer.Option(None, help="Start from this model folder's weights (same family and parameter shapes; "
                                         "e.g. continue a model at a longer clip length)."),
    text_encoder: Path = typer.Option(None, help="Local transformers text-encoder folder (default all-MiniLM-L6-v2, or "
                                                 "--base's text_encoder/ for a diffusers base, both of SDXL's)."),
    text_length: int = typer.Option(None, min=1, max=4096, help="Text tokens per caption in a new latent set (default "
                                                                "32); models trained on it read that many."),
    embeddings: Path = typer.Option(None, help="Text-embedding cache from `vidtool embed-text` to read captions from "
                                               "instead of running a text encoder."),
    out: opt.Out = ...,
    preset: opt.Preset = "tiny",
    set_: opt.Overrides = [],
    no_fft: bool = typer.Option(False, "--no-fft", help="spectral: the paper's \"w/o fft\" ablation, attention on the "
                                                         "tokens themselves (same as --set fft=false)."),
    steps: opt.Steps = 2000,
    stop_at: opt.StopAt = None,
    batch_size: opt.BatchSize = 16,
    grad_accum: opt.GradAccum = 1,
    lr: opt.LearningRate = 1e-4,
    warmup: opt.Warmup = 100,
    schedule: opt.Schedule = "cosine",
    ema: opt.Ema = None,
    frames: opt.Frames = 16,
    size: opt.Size = 64,
    buckets: opt.Buckets = None,
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
    validate_every: opt.ValidateEvery = None,
    validate_prompts: opt.ValidatePrompts = None,
    validate_steps: opt.ValidateSteps = None,
) -> None:
    import torch

    from stages.context import progress_bar, resolve_device
    from vidtool.data.training_sets import training_set
    from vidtool.generators.build import build_generator
    from vidtool.train import generator_setup as setup
    from vidtool.train.parallel import build_device

    entry, vae, text_encoder, set_, shapes = setup.checked_inputs(
        family, preset=preset, base=base, vae=vae, text_encoder=text_encoder, embeddings=embeddings,
        text_length=text_length, no_fft=no_fft, set_=set_, buckets=buckets, validate_every=validate_every,
        validate_prompts=validate_prompts)
    if validate_prompts is not None:
        from stages.train_samples import read_prompts

        read_prompts(entry, validate_prompts)  # refused now rather than after minutes of encoding
    dataset = training_set(entry, data, setup.cache_path(entry, out, token_set=token_set, latent_set=latent_set),
                           tokenizer if entry.trains_on == "tokens" else vae, text_encoder=text_encoder, frames=frames,
                           size=size, fps=fps, device=resolve_device(), progress_bar=progress_bar, buckets=shapes,
                           text_length=text_length)
    plan = setup.bucket_plan(dataset, shapes, batch_size, seed)
    torch.manual_seed(seed)
    with build_device(strategy):  # FSDP ranks other than 0 build on the meta device: rank 0's weights fill it
        model = build_generator(family, preset, set_, base, dataset.info)
        setup.check_base_data(model, base, dataset)
        if init is not None:
            setup.warm_start(model, family, init)
    validation = None
    if validate_every is not None:
        from stages.train_samples import prepare

        validation = prepare(entry, dataset, validate_prompts, every=validate_every, steps=validate_steps,
                             text_encoder=text_encoder, autoencoder=tokenizer if entry.trains_on == "tokens" else vae,
                             seed=seed, device=resolve_device())
    opt.run_training(model, dataset, None, out, what=family, plan=plan, manifests=data,
                     training_set=getattr(dataset, "path", None), validation=validation,
                     ctx=ctx, **opt.trainer_options(locals()))

