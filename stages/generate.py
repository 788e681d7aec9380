"""`vidtool generate` (also `vidtool sample-keyframes`): prompts → keyframe or video latents, or
token ids; an image → a LaMD motion latent. The sampling is vidtool.pipelines'."""

from __future__ import annotations

from pathlib import Path

import typer

from stages.addon_options import (Base, ControlImage, ControlNet, ControlScale, IpAdapter, IpAdapterScale, Lora, LoraScale,
                                  addon_inputs, addon_options)

app = typer.Typer(add_completion=False)
# Item i of a batch is sampled with seed + i, and torch's generators take at most 64 bits.
SEED_MAX = 2**63 - 1

HELP = """Generate from text prompts with a text-to-video generator.

--family fusionframes (the default) samples FusionFrames keyframes (a 'keyframes' file at the
keyframe rate, 2 fps for the bundled model) for `vidtool interpolate` to fill in; --family harivo
samples full-rate video latents (a 'latents' file) for `vidtool decode`; --family motionaura
samples 3D-MBQ-VAE token ids by masked discrete diffusion (10 steps, Table 12), a 'tokens' file.
Item i of a run uses seed + i, so a batch gives the same result as its prompts run one by one.
Models take the device one at a time: the text encoder embeds every prompt and is freed before
the generator moves there; --max-memory also splits the prompts into sub-batches that fit.
--scheduler picks the Gaussian families' sampler (diffusers: ddim, ddpm, dpm++, unipc, euler).

--height/--width (pixels, multiples of the autoencoder's spatial factor: 8 for the bundled
fusionframes and harivo, 4 for motionaura) set the frame size, default the training size 64×64;
the U-Nets and the spectral transformer (RoPE) run at any size, and `interpolate` and `decode`
keep it. --frames: fusionframes up to 16 keyframes, harivo up to its 16 trained frames, motionaura
a multiple of 4. --fps conditions motionaura; the other families sample at their training rate
and refuse another. A request a model cannot honour is refused in one line that names its limit.

Examples:

  vidtool generate "a red circle moving right" | vidtool interpolate | vidtool decode -o out.mp4

  vidtool generate "a red circle moving right" --height 48 --width 80 | vidtool interpolate | vidtool decode -o wide.mp4

  vidtool generate "a red circle moving right" --family motionaura --height 48 --width 80 --frames 8 --fps 4 | vidtool decode -o wide.mp4

  vidtool generate --prompts prompts.txt --seed 3 --frames 4 --steps 50 --cfg 7.5 -o keyframes.safetensors

  vidtool generate --prompts prompts.txt --max-memory 6G --dtype bf16 --compile -o keyframes.safetensors

  vidtool generate "a red circle moving right" --family motionaura | vidtool decode -o out.mp4

  vidtool generate "a blue square moving up" --family harivo --scheduler dpm++ --steps 10 | vidtool decode -o out.mp4
  vidtool generate "a red circle moving right" --family harivo --lora style.safetensors --lora-scale 0.8 | vidtool decode -o out.mp4
  vidtool generate "a red circle moving right" --family harivo --controlnet canny/ --control-image 0=first.png --control-image -1=last.png | vidtool decode -o out.mp4
  vidtool generate "a circle moving right" --family harivo --ip-adapter ip-adapter/ --image red.png --ip-adapter-scale 0.6 | vidtool decode -o out.mp4

--family lamd animates an image (LaMD): it samples a motion latent for --image with optional --text
or --label, written as a 'motion' file that `vidtool decode` renders. Its DMG has a learned table of
content positions and its MCD-VAE a fixed clip length L, so it makes the training size, length and
rate only (64×64, 8 frames, 4 fps for the bundled one):

  vidtool generate --family lamd --image first.png --text "a red circle moving right" | vidtool decode -o out.mp4"""


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
    seed: int = typer.Option(0, min=0, max=SEED_MAX, help="Seed of item 0; item i uses seed + i."),
    frames: int = typer.Option(None, min=1, max=256, help="Frames to generate (keyframes for fusionframes; default: the model's "
                                          "training length, 4 keyframes / 16 frames for the bundled ones)."),
    steps: int = typer.Option(None, min=1, max=1000, help="Sampling steps (default: 25; motionaura 10; for lamd K = 200 of 1000)."),
    scheduler: str = typer.Option(None, help="Sampler of fusionframes, harivo and lamd: ddim, ddpm, dpm++, unipc or "
                                             "euler (default: ddim; ddpm for lamd)."),
    cfg: float = typer.Option(None, min=0, max=100, help="Classifier-free guidance scale, 1 = none (default: 5 for fusionframes, "
                                         "HARIVO's App. D schedule for harivo)."),
    alpha: float = typer.Option(None, min=0, max=1000, help="HARIVO mitigating-gradient strength (Algorithm 1; default 40, 0 = off)."),
    temperature: float = typer.Option(None, min=0, max=100, help="motionaura: sampling temperature of the token draws "
                                                        "(default the model's, 0 = most likely token)."),
    fps: float = typer.Option(None, min=0.1, max=240, help="Frame rate: motionaura is conditioned on it (default: the "
                                                           "training clips'); the other families take only their own."),
    height: int = typer.Option(None, min=1, max=4096, help="Frame height in pixels, a multiple of the autoencoder's spatial "
                                                 "factor (default: the training size)."),
    width: int = typer.Option(None, min=1, max=4096, help="Frame width in pixels, a multiple of the autoencoder's spatial "
                                                "factor (default: the training size)."),
    batch_size: int = typer.Option(8, min=1, max=1024, help="Prompts sampled together (memory vs speed; results do not change)."),
    image: Path = typer.Option(None, help="lamd: the frame to animate; fusionframes, harivo: the --ip-adapter image prompt."),
    text: str = typer.Option(None, help="lamd: text describing the motion (or give it as the prompt argument)."),
    label: int = typer.Option(None, min=0, help="lamd: class label, for a dmg trained with labels."),
    max_memory: str = typer.Option(None, "--max-memory", help="Memory budget (e.g. 6G, 512M, or auto = from the device): "
                                   "prompts are sampled in sub-batches that fit under it (results do not change)."),
    lora: Lora = None, lora_scale: LoraScale = None, base: Base = None, controlnet: ControlNet = None,
    control_image: ControlImage = None, control_scale: ControlScale = None, ip_adapter: IpAdapter = None,
    ip_adapter_scale: IpAdapterScale = None,
) -> None:
    from stages.context import check_output
    from vidtool.checkpoint import read_config
    from vidtool.data.manifest import prompts_of
    from vidtool.budget import parse_memory
    from vidtool.errors import UserError
    from vidtool.families import REGISTRY, by_option
    from vidtool.model_store import default_model

    check_output(out, inputs=[prompts, image, embeddings, *addon_inputs(lora, control_image)])
    from vidtool.diffusion.schedulers import SAMPLERS  # torch: after the inputs are known to exist
    if scheduler is not None and scheduler not in SAMPLERS:
        raise UserError(f"unknown --scheduler {scheduler!r}; known: {', '.join(SAMPLERS)}")
    if max_memory is not None:  # checked for every family; lamd animates one image, with no batch to split
        parse_memory(max_memory)
    wanted = by_option("generate", family) if family is not None else None
    folder = model if model is not None else default_model(wanted.name if wanted else "generate")
    found = REGISTRY.get(read_config(folder)["family"])
    if found is None or found.generate is None:
        raise UserError(f"{folder} is a {read_config(folder)['family']} model, not a text-to-video generator; pass "
                        f"--model with a {' or '.join(f.name for f in REGISTRY.values() if f.generate)} folder")
    if wanted is not None and wanted is not found:
        raise UserError(f"--family {family} needs a {wanted.name} model, but {folder} is a {found.name} model")
    addons = addon_options(lora, lora_scale, base, found.generate, controlnet, control_image, control_scale, ip_adapter,
                           image, ip_adapter_scale)
    if found.name == "dmg":  # LaMD image-to-video through latent motion
        from stages.generate_motion import generate_motion

        return generate_motion(image, out, folder=folder, text=text if text is not None else prompt, label=label,
                               frames=frames, seed=seed, steps=steps, cfg=cfg, text_encoder=text_encoder,
                               scheduler=scheduler or "ddpm", height=height, width=width, fps=fps)
    if (image is not None and ip_adapter is None) or text is not None or label is not None:
        raise UserError("--image (without --ip-adapter), --text and --label belong to --family lamd (image-to-video)")
    if alpha is not None and found.name != "harivo":
        raise UserError("--alpha (mitigating-gradient sampling) belongs to --family harivo")
    if temperature is not None and found.name != "spectral":
        raise UserError("--temperature belongs to --family motionaura")
    if scheduler is not None and found.name == "spectral":
        raise UserError("--scheduler belongs to the Gaussian families; motionaura unmasks tokens by confidence")
    items = prompts_of(prompt, prompts)
    if steps is None:  # the family's default: Table 12's 10 masked-diffusion steps, else 25
        steps = read_config(folder)["config"].get("sample_steps", 25)
    # Options left unset fall back to the family's own defaults in its pipeline.
    options = addons | {k: v for k, v in (("frames", frames), ("cfg", cfg), ("alpha", alpha), ("temperature",
                        temperature), ("fps", fps), ("height", height), ("width", width)) if v is not None}
    if found.name != "spectral":
        options["scheduler"] = scheduler or "ddim"
    from stages.sample_prompts import sample

    sample(items, folder, out, text_encoder=text_encoder, seed=seed, steps=steps, options=options,
           batch_size=batch_size, embeddings=embeddings, max_memory=max_memory)
