"""`vidtool generate --family lamd`: an image (+ text or a class) → a LaMD `motion` file.

A `motion` tensor file holds "motion" float [B, d, h, w] (z_m) and "content" uint8 [B, H, W, 3]
(the image the motion starts from); `vidtool.model` is the MCD-VAE's tag, so `decode` finds the
fusion decoder, and `--content OTHER.png` renders the same motion on another image (§4.2.2).
"""

from __future__ import annotations

from pathlib import Path


def generate_motion(image: Path | None, out: str, *, folder: Path, text: str | None, label: int | None,
                    frames: int | None, seed: int, steps: int | None, cfg: float | None, text_encoder: Path | None,
                    scheduler: str = "ddpm", height: int | None = None, width: int | None = None,
                    fps: float | None = None) -> None:
    import time

    import torch

    from stages.context import compile_if_asked, console, progress_bar, resolve_device, resolve_dtype
    from vidtool import checkpoint, tensorfile
    from vidtool.errors import UserError
    from vidtool.memory import on_device, release
    from vidtool.pipelines.lamd import encode_content, load_pair, sample_motion
    from vidtool.video import read_image

    if image is None:
        raise UserError("--family lamd animates an image: pass --image FIRST_FRAME.png")
    if text is not None and label is not None:
        raise UserError("give --text or --label, not both")
    if steps is not None and not 1 <= steps <= 1000:
        raise UserError(f"--steps (K) must lie in [1, 1000] (a subsequence of the T = 1000 training steps), got {steps}")
    config = checkpoint.read_config(folder)["config"]
    side = config["image_size"]
    if (height or side, width or side) != (side, side):
        raise UserError(f"this LaMD model makes {side}×{side} video only (its DMG's content tokens carry a learned "
                        f"{config['sample_size']}×{config['sample_size']} position table); drop --height/--width")
    if fps is not None and fps != config["fps"]:
        raise UserError(f"this LaMD model makes video at {config['fps']:g} fps, the rate it was trained at; drop --fps "
                        f"or pass --fps {config['fps']:g}")
    started = time.monotonic()
    device = resolve_device()
    dtype = resolve_dtype(device)
    # On the host until their turn: text encoder, content encoder and DMG take the device one at a time.
    dmg, vae, vae_folder = load_pair(folder, "cpu", dtype)
    if frames is not None and frames != vae.frames:
        raise UserError(f"this model makes clips of L = {vae.frames} frames (its motion latent folds all L into "
                        f"channels, r_t = L); pass --frames {vae.frames} or a model trained for {frames}")
    pixels = read_image(image, side)
    conditions = {}
    if text is not None:
        if not text.strip():
            raise UserError("--text is empty; describe the motion, e.g. \"a red circle moving right\"")
        if dmg.config.text_dim is None:
            raise UserError(f"{folder} was trained without text; drop --text")
        from vidtool.text_cache import matching_encoder

        encoder = matching_encoder(None, text_encoder, folder=folder, trained_with=dmg.config.text_encoder,
                                   dim=dmg.config.text_dim, device=device, max_length=dmg.config.text_max_length,
                                   dtype=dtype)
        embedded, null = encoder.encode([text.strip()]), encoder.encode([""])
        conditions = dict(text=embedded.tokens, text_mask=embedded.mask, null_text=null.tokens[0],
                          null_mask=null.mask[0])
        del encoder
        release(device)
    if label is not None:
        conditions["label"] = torch.tensor([label], device=device)
    k = steps or dmg.config.sampling_steps
    with torch.inference_mode(), on_device(vae, device):
        content = encode_content(vae, torch.from_numpy(pixels))
    dmg.to(device)
    compile_if_asked(dmg, "predict", device)
    with progress_bar("sampling motion", total=k) as done, torch.inference_mode():
        motion = sample_motion(dmg, content, steps=k, guidance_scale=cfg, scheduler=scheduler,
                               generator=[torch.Generator().manual_seed(seed)], progress=done, **conditions)
    tensors = {"motion": motion.float().cpu(), "content": torch.from_numpy(pixels)}
    scale = dmg.config.guidance_scale if cfg is None else cfg
    params = {"frames": vae.frames, "steps": k, "sampler": scheduler, "cfg": scale, "label": label}
    tf = tensorfile.TensorFile(kind="motion", tensors=tensors, model=checkpoint.model_tag(vae_folder), fps=dmg.config.fps,
                               prompt=text, seed=seed, params=params,
                               extra={"generator": checkpoint.model_tag(folder), "model_path": str(vae_folder.resolve())})
    tensorfile.save(tf, out)
    console().print(f"[green]motion[/] {tuple(motion.shape[1:])} for {vae.frames} frames of {image} from "
                    f"{checkpoint.model_tag(folder)}, K = {k} steps ({scheduler}), cfg {scale:g}, seed {seed}, "
                    f"{time.monotonic() - started:.1f} s → {'stdout' if out == '-' else out}", soft_wrap=True)
