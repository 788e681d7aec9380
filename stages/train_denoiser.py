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
or a Stable Diffusion pipeline folder (diffusers layout; its vae/ and text_encoder/ are then the
defaults for --vae and --text-encoder).
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
                                        "AutoencoderKL (default: the bundled one, or --base's vae/ for a diffusers base)."),
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
                                                 "--base's text_encoder/ for a diffusers base)."),
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
    from vidtool.errors import UserError
    from vidtool.families import REGISTRY, trainable
    from vidtool.generators.build import build_generator
    from vidtool.standard_folders import is_diffusers_unet
    from vidtool.train.parallel import build_device

    if family not in trainable():
        raise UserError(f"unknown generator family {family!r}; known: {', '.join(trainable())}")
    entry = REGISTRY[family]
    if entry.base and base is None:  # before minutes of encoding
        raise UserError(f"{family} extends a trained {entry.base} model: pass --base DIR (a {entry.base} model folder)")
    if base is not None and is_diffusers_unet(base):
        # A Stable Diffusion checkout: its U-Net works in its VAE's latents on its text encoder's tokens.
        vae = vae or _pipeline_part(base, "vae")
        if embeddings is None:
            text_encoder = text_encoder or _pipeline_part(base, "text_encoder")
    if text_length is not None and entry.trains_on != "latents":
        raise UserError(f"--text-length is for the latent families; {family}'s {entry.trains_on} set keeps its own")
    if embeddings is not None:  # a cache goes wherever an encoder path goes (vidtool.text_cache)
        if text_encoder is not None:
            raise UserError("give --text-encoder or --embeddings (a text cache), not both")
        text_encoder = embeddings
    if no_fft:
        if family != "spectral":
            raise UserError("--no-fft belongs to --family spectral (spectral-inpaint takes its base's setting)")
        set_ = [*set_, "fft=false"]
    shapes = None
    if buckets is not None:
        from vidtool.data.buckets import parse_buckets

        if entry.trains_on != "latents":
            raise UserError(f"--buckets is for the latent families (t2i, keyframes, interp, harivo); {family}'s "
                            f"{entry.trains_on} set holds clips of one shape")
        shapes = parse_buckets(buckets)
    if (validate_every is None) != (validate_prompts is None):
        raise UserError("--validate-every N and --validate-prompts FILE go together: the prompts to sample every N updates")
    if validate_prompts is not None:
        from stages.train_samples import read_prompts

        read_prompts(entry, validate_prompts)  # refused now rather than after minutes of encoding
    cache = {"tokens": token_set, "latents": latent_set, "motion": latent_set}[entry.trains_on]
    default_cache = {"tokens": "token-set", "latents": "latent-set", "motion": "motion-set"}[entry.trains_on]
    dataset = training_set(entry, data, cache or out / f"{default_cache}.safetensors",
                           tokenizer if entry.trains_on == "tokens" else vae, text_encoder=text_encoder, frames=frames,
                           size=size, fps=fps, device=resolve_device(), progress_bar=progress_bar, buckets=shapes,
                           text_length=text_length)
    plan = _bucket_plan(dataset, shapes, batch_size, seed)
    torch.manual_seed(seed)
    with build_device(strategy):  # FSDP ranks other than 0 build on the meta device: rank 0's weights fill it
        model = build_generator(family, preset, set_, base, dataset.info)
        _check_base_data(model, base, dataset)
        if init is not None:
            _warm_start(model, family, init)
    validation = None
    if validate_every is not None:
        from stages.train_samples import prepare

        validation = prepare(entry, dataset, validate_prompts, every=validate_every, steps=validate_steps,
                             text_encoder=text_encoder, autoencoder=tokenizer if entry.trains_on == "tokens" else vae,
                             seed=seed, device=resolve_device())
    opt.run_training(model, dataset, None, out, what=family, plan=plan, manifests=data,
                     training_set=getattr(dataset, "path", None), validation=validation,
                     ctx=ctx, **opt.trainer_options(locals()))


def _pipeline_part(base: Path, name: str) -> Path | None:
    """A diffusers pipeline's `name` component: under the root given as --base, or beside its unet/."""
    from vidtool.standard_folders import is_pipeline_root, sibling

    if is_pipeline_root(base):
        return base / name if (base / name / "config.json").is_file() else None
    return sibling(base, name)


def _bucket_plan(dataset, shapes, batch_size: int, seed: int):
    """The batch plan of a bucketed latent set (None for a plain one): its buckets, with the batch
    sizes of --buckets when given (it must name the set's shapes), else --batch-size for each."""
    from vidtool.data.buckets import Bucket, BucketPlan
    from vidtool.errors import UserError

    stored = getattr(dataset.info, "buckets", None)
    if stored is None:
        if shapes is not None:
            raise UserError(f"{dataset.path} holds clips of one shape; pass another --latent-set path to build a "
                            "bucketed one with --buckets")
        return None
    if shapes is not None and [b.shape for b in shapes] != stored:
        raise UserError(f"{dataset.path} was built with buckets {','.join(stored)}; give those shapes in --buckets "
                        "(with any batch sizes) or another --latent-set path")
    chosen = shapes or [Bucket(b.height, b.width, b.frames, batch_size) for b in dataset.buckets]
    return BucketPlan(chosen, dataset.bucket_of, seed)


def _warm_start(model, family: str, init: Path) -> None:
    """Load --init's weights into the freshly built model; its config (clip length, guidance) stays the
    one built from the data and --set, which is what makes a warm start at a new clip length work."""
    from vidtool.checkpoint import from_pretrained, read_config
    from vidtool.errors import UserError

    found = read_config(init)["family"]
    if found != family:
        raise UserError(f"--init {init} is a {found} model, not {family}")
    try:
        model.load_state_dict(from_pretrained(init).state_dict(), strict=True)
    except RuntimeError as e:  # missing/unexpected keys or shape mismatches: a different preset
        raise UserError(f"--init {init} does not fit this {family} model (another preset or --set?): "
                        f"{str(e).splitlines()[0]}") from e


def _check_base_data(model, base: Path | None, dataset) -> None:
    """The frozen base must have been trained in the same latent or token space as the data."""
    from vidtool.errors import UserError

    if base is None:
        return
    frozen = getattr(model.config, "base", None)
    if hasattr(frozen, "cross_attention_dim"):  # a video family on a frozen t2i U-Net
        text_dim, channels = dataset.text.shape[-1], _latent_channels(dataset)
        if text_dim != frozen.cross_attention_dim:
            raise UserError(f"--base {base} attends to {frozen.cross_attention_dim}-d text tokens; the training set's "
                            f"captions are {text_dim}-d ({dataset.info.text_encoder}): pass the text encoder the base "
                            "was trained with (--text-encoder)")
        if channels != frozen.latent_channels:
            raise UserError(f"--base {base} denoises {frozen.latent_channels}-channel latents; the training set holds "
                            f"{channels}-channel ones: pass the autoencoder the base was trained with (--vae)")
    space = getattr(dataset.info, "vae", None) or dataset.info.tokenizer
    trained_on = getattr(model.config, "vae", None) or getattr(model.config, "tokenizer", space)
    if trained_on != space:
        raise UserError(f"--base {base} was trained on {trained_on}, the training set holds {space}'s "
                        "latents or tokens; use a set made by the same autoencoder")


def _latent_channels(dataset) -> int:
    first = dataset.latents[0]
    return int((first[0][first[1]] if isinstance(first, tuple) else first).shape[0])
