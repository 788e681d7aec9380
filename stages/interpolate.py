"""`vidtool interpolate`: T keyframe latents -> 4T - 3 latents (FusionFrames §4.2), once or twice."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

app = typer.Typer(add_completion=False)

HELP = """Interpolate latents: three new frames between each pair of input frames (T -> 4T - 3), at
four times the frame rate.

Input: a 'keyframes' or 'latents' tensor file (path or - for stdin) from the autoencoder the model
was trained on. Output: a 'latents' tensor file for `vidtool decode`, with the input's model record
and prompts. --times 2 interpolates twice (x16): the first pass uses --skip, later passes s = 1, as
FusionFrames infers (2 fps -> 8 fps with s = 3, then 8 -> ~30 fps with s = 1). s is the stride
between output frames counted in frames of a ~24 fps video. --method mfi runs the masked frame
interpolation baseline (five U-Net images per three new frames instead of one); it has no bundled
model, so it needs --model. --scheduler picks the sampler (diffusers: ddim, ddpm, dpm++, unipc,
euler).

Examples:

  vidtool generate "a red circle moving right" | vidtool interpolate | vidtool decode -o out.mp4

  vidtool interpolate keyframes.safetensors --steps 50 --guidance 0.5 -o z.safetensors

  vidtool interpolate keyframes.safetensors --times 2 --seed 3 -o z30fps.safetensors

  vidtool interpolate keyframes.safetensors --scheduler dpm++ --steps 10 -o z.safetensors

  vidtool interpolate keyframes.safetensors --dtype bf16 --compile -o z.safetensors

  vidtool train-denoiser --family interp-mfi --base runs/t2i --latent-set runs/t2i/latent-set.safetensors -o runs/interp-mfi

  vidtool interpolate keyframes.safetensors --method mfi --model runs/interp-mfi -o z.safetensors"""


class Method(str, Enum):
    fusionframes = "fusionframes"
    mfi = "mfi"


@app.command("interpolate", help=HELP)
def interpolate(
    source: str = typer.Argument("-", help="A 'keyframes' or 'latents' tensor file, or - for stdin."),
    out: str = typer.Option("-", "--out", "-o", help="Output tensor file, or - for stdout."),
    model: str = typer.Option(None, "--model", "-m", help="Interpolation model folder; default: the bundled one."),
    steps: int = typer.Option(25, min=1, max=1000, help="Sampling steps per pass."),
    skip: int = typer.Option(3, min=1, max=12, help="Skip-frame s of the first pass (§5: 3)."),
    tp: int = typer.Option(0, min=0, max=250, help="Perturbation level of the keyframes (§5: 0)."),
    guidance: float = typer.Option(0.25, min=0.0, max=10.0, help="Context guidance weight w (Eq. 5)."),
    seed: int = typer.Option(0, min=0, max=2**63 - 1, help="Random seed (at most 64 bits, torch's generators)."),
    method: Method = typer.Option(Method.fusionframes, help="fusionframes, or mfi (the masked baseline)."),
    times: int = typer.Option(1, min=1, max=3, help="Passes: 1 gives 4T-3 frames, 2 gives 16T-15."),
    scheduler: str = typer.Option("ddim", help="Sampler: ddim, ddpm, dpm++, unipc or euler."),
) -> None:
    from stages.context import check_output

    check_output(out, inputs=[source])
    import torch

    import time

    from stages.context import compile_if_asked, progress_bar, resolve_device, resolve_dtype, say_written
    from vidtool import checkpoint, model_store, tensorfile
    from vidtool.diffusion.schedulers import SAMPLERS
    from vidtool.errors import UserError
    from vidtool.families import by_option
    from vidtool.pipelines.fusionframes import LATER_SKIP, interpolate as run

    if scheduler not in SAMPLERS:
        raise UserError(f"unknown --scheduler {scheduler!r}; known: {', '.join(SAMPLERS)}")
    tf = tensorfile.load(source)
    started = time.monotonic()  # after the input is in: in a pipe, not the stages before it
    if tf.kind == "video":
        raise UserError(f"{source} holds video frames; interpolate works on latents: encode them first "
                        "(vidtool encode in.mp4 | vidtool interpolate)")
    if tf.kind not in ("keyframes", "latents"):
        raise UserError(f"{source}: this stage takes keyframes or latents, not '{tf.kind}'")
    family = by_option("interpolate", method.value).name
    if model is None and method is Method.mfi:
        raise UserError("--method mfi has no bundled model: pass --model with an interp-mfi folder "
                        "(vidtool train-denoiser --family interp-mfi --base T2I_DIR ...)")
    folder = Path(model) if model else model_store.default_model(family)
    config = checkpoint.read_config(folder)  # checked before the (slower) model load
    if config["family"] != family:
        raise UserError(f"--model {folder} is a {config['family']} model; --method {method.value} needs an {family} model")
    vae = config["config"].get("vae")
    if tf.model != vae:
        raise UserError(f"{source} holds latents of {tf.model}, but {folder} interpolates {vae}'s; "
                        "encode or generate with that autoencoder, or pass --model with a matching interpolator")
    device = resolve_device()
    interpolator = checkpoint.from_pretrained(folder, device=device, dtype=resolve_dtype(device))
    compile_if_asked(interpolator, "predict", device)
    keyframes = tf.main.float().to(device)
    if keyframes.shape[2] < 2:
        raise UserError(f"{source} has {keyframes.shape[2]} frame; interpolation needs at least 2")
    skips = [skip] + [LATER_SKIP] * (times - 1)
    with progress_bar("interpolating", steps * times) as done, torch.inference_mode():
        latents = run(interpolator, keyframes, steps=steps, skip=skip, tp=tp, guidance=guidance, times=times,
                      scheduler=scheduler, generator=torch.Generator(device).manual_seed(seed), progress=done).latents
    params = {"frames": int(latents.shape[2]), "steps": steps, "skip": skips, "tp": tp, "guidance": guidance,
              "method": method.value, "times": times, "input_params": tf.params}
    # The frame size the input was encoded or generated at, which decode trims the padding back to.
    params.update({k: tf.size_param(k) for k in ("height", "width") if k in tf.params})
    if scheduler != "ddim":
        params["sampler"] = scheduler
    if "generator" in tf.extra:  # the keyframe generator; `generator` now names the interpolator
        params["input_generator"] = tf.extra["generator"]
    extra = {"generator": checkpoint.model_tag(folder)}
    if "model_path" in tf.extra:
        extra["model_path"] = tf.extra["model_path"]
    result = tensorfile.TensorFile(kind="latents", tensors={"latents": latents.cpu().contiguous()}, model=tf.model,
                                   fps=tf.fps * 4**times if tf.fps else None, seed=seed, params=params,
                                   parents=[tf.digest], extra=extra)
    prompts = tf.prompts()
    if prompts is not None:
        result.set_prompts(prompts)
    tensorfile.save(result, out)
    rate = f", {tf.fps:g} → {result.fps:g} fps" if tf.fps else ""
    say_written(out, f"latents {'×'.join(map(str, latents.shape))}, {keyframes.shape[2]} → {latents.shape[2]} frames"
                f"{rate}", started)
