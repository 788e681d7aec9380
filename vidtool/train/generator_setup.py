"""What `vidtool train-denoiser` checks and prepares around the trainer: its options against the
family (before minutes of encoding), a Stable Diffusion base's parts, the batch plan of a bucketed
set, --init's warm start and the base's match with the training set."""

from __future__ import annotations

from pathlib import Path

from vidtool.errors import UserError


def checked_inputs(family: str, *, preset: str = "tiny", base, vae, text_encoder, embeddings, text_length, no_fft, set_,
                   buckets, validate_every, validate_prompts):
    """(family entry, vae, text encoder or text cache, --set entries, bucket shapes or None) once the
    options are checked against the family; a diffusers base supplies its own vae/ and text_encoder/."""
    from vidtool.families import REGISTRY, trainable
    from vidtool.standard_folders import is_diffusers_unet, is_pipeline_root, pipeline_index

    if family not in trainable():
        raise UserError(f"unknown generator family {family!r}; known: {', '.join(trainable())}")
    entry = REGISTRY[family]
    if entry.base and base is None:  # before minutes of encoding
        raise UserError(f"{family} extends a trained {entry.base} model: pass --base DIR (a {entry.base} model folder)")
    if base is not None and is_pipeline_root(base):
        pipeline_index(base)  # one line for a model_index.json that is not JSON, before anything reads it
    if base is not None and is_diffusers_unet(base):
        # A Stable Diffusion checkout: its U-Net works in its VAE's latents on its text encoder's tokens.
        vae = vae or pipeline_part(base, "vae")
        if embeddings is None:
            text_encoder = text_encoder or pipeline_text_encoder(base)
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
    from vidtool.generators.build import checked_settings

    checked_settings(family, preset, set_)  # an absurd size is refused before minutes of encoding
    shapes = None
    if buckets is not None:
        from vidtool.data.buckets import parse_buckets

        if entry.trains_on != "latents":
            raise UserError(f"--buckets is for the latent families (t2i, keyframes, interp, harivo); {family}'s "
                            f"{entry.trains_on} set holds clips of one shape")
        shapes = parse_buckets(buckets)
    if (validate_every is None) != (validate_prompts is None):
        raise UserError("--validate-every N and --validate-prompts FILE go together: the prompts to sample every N updates")
    return entry, vae, text_encoder, set_, shapes


def cache_path(entry, out: Path, *, token_set: Path | None, latent_set: Path | None) -> Path:
    """The training set's cache: the option naming it, else OUT/token-set, latent-set or motion-set."""
    given = {"tokens": token_set, "latents": latent_set, "motion": latent_set}[entry.trains_on]
    default = {"tokens": "token-set", "latents": "latent-set", "motion": "motion-set"}[entry.trains_on]
    return given or out / f"{default}.safetensors"


def pipeline_part(base: Path, name: str) -> Path | None:
    """A diffusers pipeline's `name` component: under the root given as --base, or beside its unet/."""
    from vidtool.standard_folders import is_pipeline_root, part_of, sibling

    if is_pipeline_root(base):
        part = part_of(Path(base), name)
        if (part / "config.json").is_file():
            return part
        return _missing_part(Path(base), name)
    if is_pipeline_root(Path(base).resolve().parent) and sibling(base, name) is None:
        return _missing_part(Path(base).resolve().parent, name)
    return sibling(base, name)


def _missing_part(root: Path, name: str) -> None:
    """None for a component the pipeline does not have; one line for one its model_index.json lists
    but that is not there (the default in its place would train in another latent or text space)."""
    from vidtool.standard_folders import named_in_index

    listed = named_in_index(root, name)
    if listed is not None:
        raise UserError(f"{root}/model_index.json lists {listed}/ but {root / listed} has no config.json; copy the "
                        f"pipeline's {listed}/ folder back (or pass the {name} you mean explicitly)")
    return None


def pipeline_text_encoder(base: Path) -> Path | None:
    """A diffusers pipeline's text conditioning: its text_encoder/, or for a pipeline with two
    (SDXL: text_encoder/ and text_encoder_2/) the root, which vidtool.text reads as the pair."""
    from vidtool.standard_folders import is_pipeline_root
    from vidtool.text import is_two_encoder_pipeline

    root = Path(base) if is_pipeline_root(base) else Path(base).resolve().parent
    if is_two_encoder_pipeline(root):
        return root
    if is_pipeline_root(root) and not (root / "text_encoder_2" / "config.json").is_file():
        _missing_part(root, "text_encoder_2")
    return pipeline_part(base, "text_encoder")


def bucket_plan(dataset, shapes, batch_size: int, seed: int):
    """The batch plan of a bucketed latent set (None for a plain one): its buckets, with the batch
    sizes of --buckets when given (it must name the set's shapes), else --batch-size for each."""
    from vidtool.data.buckets import Bucket, BucketPlan
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


def warm_start(model, family: str, init: Path) -> None:
    """Load --init's weights into the freshly built model; its config (clip length, guidance) stays the
    one built from the data and --set, which is what makes a warm start at a new clip length work."""
    from vidtool.checkpoint import from_pretrained, read_config
    found = read_config(init)["family"]
    if found != family:
        raise UserError(f"--init {init} is a {found} model, not {family}")
    try:
        model.load_state_dict(from_pretrained(init).state_dict(), strict=True)
    except RuntimeError as e:  # missing/unexpected keys or shape mismatches: a different preset
        raise UserError(f"--init {init} does not fit this {family} model (another preset or --set?): "
                        f"{str(e).splitlines()[0]}") from e


def check_base_data(model, base: Path | None, dataset) -> None:
    """The frozen base must have been trained in the same latent or token space as the data."""
    if base is None:
        return
    frozen = getattr(model.config, "base", None)
    if hasattr(frozen, "cross_attention_dim"):  # a video family on a frozen t2i U-Net
        text_dim, channels = dataset.text.shape[-1], latent_channels(dataset)
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


def latent_channels(dataset) -> int:
    first = dataset.latents[0]
    return int((first[0][first[1]] if isinstance(first, tuple) else first).shape[0])
