"""LaMD's side of the stages (image-to-video through latent motion): `train-denoiser --family dmg`,
`generate --family lamd`, `encode` with an mcd-vae and `decode` of a `motion` file.

A `motion` tensor file holds "motion" float [B, d, h, w] (z_m) and "content" uint8 [B, H, W, 3]
(the image the motion starts from); `vidtool.model` is the MCD-VAE's tag, so `decode` finds the
fusion decoder, and `--content OTHER.png` renders the same motion on another image (§4.2.2).
"""

from __future__ import annotations

from pathlib import Path


def read_image(path: Path, size: int):
    """An image file -> uint8 [1, size, size, 3] (short side resized, centre square crop)."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    from vidtool.errors import UserError

    if not Path(path).is_file():
        raise UserError(f"no such image: {path}")
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            side = min(im.size)
            box = ((im.width - side) / 2, (im.height - side) / 2, (im.width + side) / 2, (im.height + side) / 2)
            rgb = np.array(im if im.size == (size, size) else im.resize((size, size), Image.Resampling.LANCZOS, box=box))
    except (UnidentifiedImageError, OSError) as e:
        raise UserError(f"{path} is not a readable image ({e}); pass a .png or .jpg") from e
    return rgb[None]


def image_to_model(image):
    """uint8 [B, H, W, 3] (numpy or torch) -> float [B, 3, H, W] in [-1, 1]."""
    import torch

    from vidtool.video import frames_to_model

    return frames_to_model(torch.as_tensor(image)[:, None])[:, :, 0]


def load_pair(dmg_folder: Path, device: str):
    """The DMG in `dmg_folder` and the MCD-VAE its config names (found by tag)."""
    from vidtool import checkpoint, model_store
    from vidtool.errors import UserError

    family = checkpoint.read_config(dmg_folder)["family"]
    if family != "dmg":
        raise UserError(f"{dmg_folder} is a {family} model; --family lamd needs a dmg folder (train-denoiser --family dmg)")
    dmg = checkpoint.from_pretrained(dmg_folder, device=device).float()
    vae_folder = model_store.find_by_tag(dmg.config.vae)
    return dmg, checkpoint.from_pretrained(vae_folder, device=device).float(), vae_folder


def model_for_family(family: str, model: str | None) -> str:
    """`--family F` of encode: the bundled default of F unless --model names a folder (of family F)."""
    from vidtool import checkpoint, model_store
    from vidtool.errors import UserError

    if model is not None:
        found = checkpoint.read_config(model)["family"]
        if found != family:
            raise UserError(f"--model {model} is a {found} model, not {family}; drop --family or pass a {family} folder")
        return model
    if family not in model_store.DEFAULTS:
        raise UserError(f"no bundled default for --family {family!r}; pass --model DIR")
    return str(model_store.default_model(family))


def generate_motion(image: Path | None, out: str, *, model: Path | None, text: str | None, label: int | None,
                    frames: int | None, seed: int, steps: int | None, cfg: float | None,
                    text_encoder: Path | None) -> None:
    import time

    import torch

    from stages.context import console, progress_bar, resolve_device
    from vidtool import checkpoint, tensorfile
    from vidtool.errors import UserError
    from vidtool.model_store import default_model

    if image is None:
        raise UserError("--family lamd animates an image: pass --image FIRST_FRAME.png")
    if text is not None and label is not None:
        raise UserError("give --text or --label, not both")
    if steps is not None and not 1 <= steps <= 1000:
        raise UserError(f"--steps (K) must lie in [1, 1000] (a subsequence of the T = 1000 training steps), got {steps}")
    started = time.monotonic()
    device = resolve_device()
    folder = model if model is not None else default_model("lamd")
    dmg, vae, vae_folder = load_pair(folder, device)
    if frames is not None and frames != vae.frames:
        raise UserError(f"this model makes clips of L = {vae.frames} frames (its motion latent folds all L into "
                        f"channels, r_t = L); pass --frames {vae.frames} or a model trained for {frames}")
    pixels = read_image(image, dmg.config.image_size)
    with torch.inference_mode():
        content = vae.encode_content(image_to_model(pixels).to(device))
        text_tokens = text_mask = null_tokens = null_mask = label_tensor = None
        if text is not None:
            if not text.strip():
                raise UserError("--text is empty; describe the motion, e.g. \"a red circle moving right\"")
            if dmg.config.text_dim is None:
                raise UserError(f"{folder} was trained without text; drop --text")
            from vidtool.text import TextEncoder

            encoder = TextEncoder(text_encoder, device=device, max_length=dmg.config.text_max_length)
            if encoder.dim != dmg.config.text_dim:
                raise UserError(f"{folder} was trained with {dmg.config.text_encoder} ({dmg.config.text_dim}-d tokens); "
                                f"{encoder.path} gives {encoder.dim}-d tokens; pass the matching --text-encoder")
            embedded, null = encoder.encode([text.strip()]), encoder.encode([""])
            text_tokens, text_mask = embedded.tokens, embedded.mask
            null_tokens, null_mask = null.tokens[0], null.mask[0]
        if label is not None:
            label_tensor = torch.tensor([label], device=device)
        k = steps or dmg.config.sampling_steps
        with progress_bar("sampling motion", total=k) as done:
            z_m = dmg.generate(content.latent, text=text_tokens, text_mask=text_mask, null_text=null_tokens,
                               null_mask=null_mask, label=label_tensor, steps=k, guidance_scale=cfg,
                               generator=[torch.Generator().manual_seed(seed)], progress=done)
    tensors = {"motion": z_m.float().cpu(), "content": torch.from_numpy(pixels)}
    scale = dmg.config.guidance_scale if cfg is None else cfg
    params = {"frames": vae.frames, "steps": k, "sampler": "ddpm", "cfg": scale, "label": label}
    tf = tensorfile.TensorFile(kind="motion", tensors=tensors, model=checkpoint.model_tag(vae_folder), fps=dmg.config.fps,
                               prompt=text, seed=seed, params=params,
                               extra={"generator": checkpoint.model_tag(folder), "model_path": str(vae_folder.resolve())})
    tensorfile.save(tf, out)
    console().print(f"[green]motion[/] {tuple(z_m.shape[1:])} for {vae.frames} frames of {image} from "
                    f"{checkpoint.model_tag(folder)}, K = {k} steps, cfg {scale:g}, seed {seed}, "
                    f"{time.monotonic() - started:.1f} s → {'stdout' if out == '-' else out}", soft_wrap=True)


def encode_motion(vae, folder: Path, clip, device: str):
    """`vidtool encode` with an mcd-vae: the first L frames of each clip -> the `motion` TensorFile of
    z_m (the posterior mean) and the clip's first frame as content."""
    import torch

    from stages.context import console
    from vidtool import checkpoint, tensorfile
    from vidtool.errors import UserError
    from vidtool.video import frames_to_model

    frames = clip.frames
    if frames.shape[1] < vae.frames:
        raise UserError(f"the clip has {frames.shape[1]} frames; this mcd-vae encodes L = {vae.frames} (r_t = L): "
                        "pass a longer clip or a lower --fps")
    if frames.shape[1] > vae.frames:
        console().print(f"[yellow]using the first {vae.frames} of {frames.shape[1]} frames (L = {vae.frames})[/]")
    frames = frames[:, : vae.frames]
    with torch.inference_mode():
        z_m = vae.encode(frames_to_model(torch.from_numpy(frames)).to(device)).latents.float().cpu()
    params = {"frames": vae.frames, "height": int(frames.shape[2]), "width": int(frames.shape[3])}
    tensors = {"motion": z_m, "content": torch.from_numpy(frames[:, 0].copy())}
    return tensorfile.TensorFile(kind="motion", tensors=tensors, model=checkpoint.model_tag(folder), fps=clip.fps,
                                 prompt=clip.prompt, params=params, parents=[clip.parent],
                                 extra={"model_path": str(Path(folder).resolve())})


def decode_motion(tf, vae, content: str | None, device: str):
    """A `motion` file -> uint8 video [B, L, H, W, 3]: its own content image, or `content` (an image
    file, the same for every item: motion transfer)."""
    import torch

    from vidtool.errors import UserError
    from vidtool.video import frames_from_model

    if vae.family != "mcd-vae":
        raise UserError(f"a motion file decodes with an mcd-vae, not {vae.family}")
    z_m = tf["motion"].float()
    if z_m.ndim != 4:
        raise UserError(f"'motion' must be [B, d, h, w] for the mcd-vae, got {tuple(z_m.shape)}")
    if content is not None:
        pixels = torch.from_numpy(read_image(Path(content), z_m.shape[2] * vae.spatial_factor)).expand(z_m.shape[0], -1, -1, -1)
    elif "content" in tf.tensors:
        pixels = tf["content"]
    else:
        raise UserError("this motion file holds no content image; pass --content IMAGE")
    with torch.inference_mode():
        video = vae.decode(z_m.to(device), image_to_model(pixels).to(device))
    return frames_from_model(video.float().cpu()).numpy()


def motion_dataset(data: list[Path], latent_set: Path, vae: Path | None, *, text_encoder: Path | None, size: int,
                   fps: float | None):
    """`train-denoiser --family dmg`'s training set: the motion-latent set at `latent_set`, built from
    the `data` manifests with the mcd-vae `vae` (default the bundled one) when it does not exist yet."""
    from stages.context import progress_bar, resolve_device
    from vidtool.checkpoint import model_tag
    from vidtool.data.motion_latents import MotionLatentDataset, build_motion_set
    from vidtool.errors import UserError
    from vidtool.model_store import default_model

    if not latent_set.is_file():
        if not data:
            raise UserError(f"no motion-latent set at {latent_set}: pass --data MANIFEST to build it (or --latent-set FILE)")
        with progress_bar("encoding motion", None) as done:
            build_motion_set(list(data), vae or default_model("mcd-vae"), latent_set, size=size, fps=fps,
                             text_encoder_path=text_encoder, device=resolve_device(), progress=done)
    dataset = MotionLatentDataset(latent_set)
    if vae is not None and model_tag(vae) != dataset.info.vae:
        raise UserError(f"{latent_set} was encoded by {dataset.info.vae}, not by --vae {vae}; "
                        "pass another --latent-set path to build a new one")
    return dataset
