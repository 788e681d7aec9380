"""`vidtool generate` (also `vidtool sample-keyframes`): prompts → keyframe or video latents."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(add_completion=False)

HELP = """Generate latents from text prompts with a text-to-video generator.

--family fusionframes (the default) samples FusionFrames keyframes (a 'keyframes' file at the
keyframe rate, 2 fps for the bundled model) for `vidtool interpolate` to fill in; --family harivo
samples full-rate video latents (a 'latents' file) for `vidtool decode`. `sample-keyframes` is the
same stage under the name of the FusionFrames pipeline step. Item i of a run uses seed + i, so a
batch gives the same result as its prompts run one by one.

Examples:

  vidtool generate "a red circle moving right" | vidtool interpolate | vidtool decode -o out.mp4

  vidtool generate --prompts prompts.txt --seed 3 --frames 4 --steps 50 --cfg 7.5 -o keyframes.safetensors

  vidtool generate "a blue square moving up" --family harivo | vidtool decode -o out.mp4

  vidtool sample-keyframes "a green triangle moving left" --model runs/keyframes -o keyframes.safetensors

--family motionaura samples 3D-MBQ-VAE token ids by masked discrete diffusion (10 steps by default,
Table 12 of the paper), a 'tokens' file for `vidtool decode`:

  vidtool generate "a red circle moving right" --family motionaura | vidtool decode -o out.mp4

--family lamd animates an image (LaMD): it samples a motion latent for --image with optional --text
or --label, written as a 'motion' file that `vidtool decode` renders:

  vidtool generate --family lamd --image first.png --text "a red circle moving right" | vidtool decode -o out.mp4"""

# --family → (model_store role of its default folder, the model family that folder must hold).
GENERATORS: dict[str, tuple[str, str]] = {
    "fusionframes": ("generate", "keyframes"),
    "harivo": ("harivo", "harivo"),
    "motionaura": ("motionaura", "spectral"),
}
# Model family → kind of the tensor file its generate() output is written as.
WRITES: dict[str, str] = {
    "keyframes": "keyframes",
    "harivo": "latents",
    "spectral": "tokens",  # MotionAura: 3D-MBQ-VAE token ids
}


@app.command("generate", help=HELP)
def generate(
    prompt: str = typer.Argument(None, help="The prompt (or --prompts FILE)."),
    out: str = typer.Option("-", "--out", "-o", help="Output tensor file, or - for stdout."),
    model: Path = typer.Option(None, "--model", "-m", help="Generator folder (default: the bundled one of --family)."),
    family: str = typer.Option(None, help="fusionframes, harivo, motionaura or lamd (default: the --model folder's, "
                                          "else fusionframes)."),
    prompts: Path = typer.Option(None, help="Text file with one prompt per line; items are batched."),
    text_encoder: Path = typer.Option(None, help="Local transformers text-encoder folder (default all-MiniLM-L6-v2)."),
    embeddings: Path = typer.Option(None, help="Text-embedding cache from `vidtool embed-text` (file or shard folder): "
                                               "no text encoder is loaded."),
    seed: int = typer.Option(0, help="Seed of item 0; item i uses seed + i."),
    frames: int = typer.Option(None, help="Frames to generate (keyframes for fusionframes; default: the model's "
                                          "training length, 4 keyframes / 16 frames for the bundled ones)."),
    steps: int = typer.Option(None, help="Sampling steps (default: 25 DDIM steps; for lamd K = 200 of DDPM's 1000)."),
    cfg: float = typer.Option(None, help="Classifier-free guidance scale, 1 = none (default: 5 for fusionframes, "
                                         "HARIVO's App. D schedule for harivo)."),
    alpha: float = typer.Option(None, min=0, help="HARIVO mitigating-gradient strength (Algorithm 1; default 40, 0 = off)."),
    temperature: float = typer.Option(None, min=0, help="motionaura: sampling temperature of the token draws "
                                                        "(default the model's, 0 = most likely token)."),
    fps: float = typer.Option(None, min=0.1, max=240, help="motionaura: the frame rate the video is conditioned on "
                                                           "(default: the training clips')."),
    batch_size: int = typer.Option(8, help="Prompts sampled together (memory vs speed; results do not change)."),
    image: Path = typer.Option(None, help="lamd: the first frame to animate (png/jpg)."),
    text: str = typer.Option(None, help="lamd: text describing the motion (or give it as the prompt argument)."),
    label: int = typer.Option(None, min=0, help="lamd: class label, for a dmg trained with labels."),
) -> None:
    from vidtool.checkpoint import read_config
    from vidtool.errors import UserError
    from vidtool.model_store import default_model

    for name, value in (("frames", frames), ("steps", steps), ("batch-size", batch_size)):
        if value is not None and value < 1:
            raise UserError(f"--{name} must be at least 1, got {value}")
    if family == "lamd":  # LaMD image-to-video through latent motion (stages/lamd.py)
        from stages.lamd import generate_motion

        return generate_motion(image, out, model=model, text=text if text is not None else prompt, label=label,
                               frames=frames, seed=seed, steps=steps, cfg=cfg, text_encoder=text_encoder)
    if image is not None or text is not None or label is not None:
        raise UserError("--image, --text and --label belong to --family lamd (image-to-video)")
    items = _read_prompts(prompt, prompts)
    if family is not None and family not in GENERATORS:
        raise UserError(f"unknown --family {family!r}; known: {', '.join(GENERATORS)}")
    folder = model if model is not None else default_model(GENERATORS[family or "fusionframes"][0])
    found = read_config(folder)["family"]
    if found not in WRITES:
        raise UserError(f"{folder} is a {found} model, not a text-to-video generator; pass --model with a "
                        f"{' or '.join(WRITES)} folder")
    if family is not None and GENERATORS[family][1] != found:
        raise UserError(f"--family {family} needs a {GENERATORS[family][1]} model, but {folder} is a {found} model")
    if alpha is not None and found != "harivo":
        raise UserError("--alpha (mitigating-gradient sampling) belongs to --family harivo")
    if (temperature is not None or fps is not None) and found != "spectral":
        raise UserError("--temperature and --fps belong to --family motionaura")
    if steps is None:  # the family's default: Table 12's 10 masked-diffusion steps, else 25 DDIM steps
        steps = read_config(folder)["config"].get("sample_steps", 25)
    # Options left unset fall back to the family's own defaults in its generate().
    options = {k: v for k, v in (("frames", frames), ("cfg", cfg), ("alpha", alpha), ("temperature", temperature),
                                 ("fps", fps)) if v is not None}
    sample(items, folder, out, text_encoder=text_encoder, seed=seed, steps=steps, options=options,
           batch_size=batch_size, embeddings=embeddings)


def _read_prompts(prompt: str | None, prompts: Path | None) -> list[str]:
    from vidtool.errors import UserError

    if (prompt is None) == (prompts is None):
        raise UserError("give one prompt as an argument or --prompts FILE (one prompt per line), not both or neither")
    if prompt is not None:
        if not prompt.strip():
            raise UserError("the prompt is empty; describe the video, e.g. \"a red circle moving right\"")
        return [prompt.strip()]
    if not prompts.is_file():
        raise UserError(f"no such prompts file: {prompts}")
    items = [line.strip() for line in prompts.read_text().splitlines() if line.strip()]
    if not items:
        raise UserError(f"{prompts} holds no prompts; write one prompt per line")
    return items


def sample(items: list[str], folder: Path, out: str, *, text_encoder: Path | None, seed: int, steps: int,
           options: dict, batch_size: int, embeddings: Path | None = None) -> None:
    import time

    import torch

    from stages.context import console, progress_bar, resolve_device
    from vidtool import checkpoint, tensorfile
    from vidtool.errors import UserError
    from vidtool.memory import retry_in_halves
    from vidtool.text_cache import text_encoder_or_cache

    started = time.monotonic()
    device = resolve_device()
    generator = checkpoint.from_pretrained(folder, device=device)
    tokens_out = WRITES[generator.family] == "tokens"
    # The text side: a video family's frozen T2I base, or the token model's own config.
    base = generator.config if tokens_out else generator.base.config
    text_dim = base.text_dim if tokens_out else base.cross_attention_dim
    encoder = text_encoder_or_cache(embeddings, text_encoder, device=device, max_length=base.text_max_length)
    if encoder.dim != text_dim:
        raise UserError(f"{folder} was trained with {base.text_encoder} ({text_dim}-d tokens); the text "
                        f"encoder {encoder.path} gives {encoder.dim}-d tokens; pass the matching --text-encoder")
    if encoder.name != base.text_encoder:
        console().print(f"[yellow]{folder} was trained with {base.text_encoder}; using {encoder.name}[/]")
    null = encoder.encode([""])
    batches = [list(range(i, min(i + batch_size, len(items)))) for i in range(0, len(items), batch_size)]
    results = []
    with progress_bar("sampling", total=steps * len(batches)) as done, torch.inference_mode():
        for n, whole in enumerate(batches):
            def run(batch: list[int], n: int = n) -> torch.Tensor:
                embedded = encoder.encode([items[i] for i in batch])
                noise = [torch.Generator().manual_seed(seed + i) for i in batch]
                return generator.generate(
                    embedded.tokens, embedded.mask, null.tokens[0], null.mask[0], steps=steps, generator=noise,
                    progress=lambda k: done(n * steps + k), **options).cpu()

            # Item i depends on seed + i alone, so a batch split after an out-of-memory error is exact.
            results.extend(retry_in_halves(run, whole, what="generate"))
    latents = torch.cat(results)
    kind = WRITES[generator.family]
    tag = checkpoint.model_tag(folder)
    if tokens_out:  # token ids [B, t, h, w] of the tokenizer, which decode finds by its tag
        fps = options.get("fps", base.fps)
        frames = latents.shape[1] * base.temporal_factor
        tensors, space, sampler = {"tokens": latents.to(torch.int32)}, base.tokenizer, "masked"
        params = {**options, "frames": frames, "steps": steps, "sampler": sampler}
        latents = latents[:, None]
    else:
        fps = getattr(generator, "fps", None)  # the rate of what generate() returns, where the family records one
        tensors, space = {"latents": latents.float()}, base.vae
        params = {**options, "steps": steps, "sampler": "ddim"}
    tf = tensorfile.TensorFile(kind=kind, tensors=tensors, model=space, fps=fps, seed=seed, params=params,
                               extra={"generator": tag})
    tf.set_prompts(items)
    tensorfile.save(tf, out)
    _, c, t, h, w = latents.shape
    rate = f", {fps:g} fps" if fps else ""
    # Token files hold token frames: say how many video frames they decode to.
    length = f"{t} token frames → {params['frames']} frames" if tokens_out else f"{t} frames"
    console().print(f"[green]{kind}[/] {len(items)} × {length} ({c}×{h}×{w}{rate}) from {tag}, "
                    f"{steps} steps, cfg {options.get('cfg', 'default')}, seed {seed}, {time.monotonic() - started:.1f} s "
                    f"→ {'stdout' if out == '-' else out}", soft_wrap=True)
