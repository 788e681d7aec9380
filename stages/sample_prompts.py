"""The text-to-video side of `vidtool generate`: prompts in batches through a family's pipeline,
written as one tensor file (`keyframes`, `latents` or `tokens`). `options` are the pipeline's, plus
`height`/`width` in pixels (turned into its latent grid here) and `fps`, which only the families
conditioned on a frame rate take; the others refuse a rate other than their own."""

from __future__ import annotations

from pathlib import Path


def sample(items: list[str], folder: Path, out: str, *, text_encoder: Path | None, seed: int, steps: int,
           options: dict, batch_size: int, embeddings: Path | None = None, max_memory: str | None = None) -> None:
    import time

    import torch

    from stages.context import compile_if_asked, console, progress_bar, resolve_device, resolve_dtype
    from vidtool import checkpoint, tensorfile
    from vidtool.errors import UserError
    from vidtool.families import REGISTRY, pipeline
    from vidtool.frozen_base import ADDONS, adapt
    from vidtool.memory import release, retry_in_halves
    from vidtool.text_cache import encode_prompts, matching_encoder

    started = time.monotonic()
    device = resolve_device()
    dtype = resolve_dtype(device)
    # The generator waits on the host while the text encoder runs: the two never share the device.
    generator = checkpoint.from_pretrained(folder, device="cpu", dtype=dtype)
    for note in adapt(generator, options):  # --base, --lora: the frozen T2I U-Net changed in place
        console().print(note)
    entry = REGISTRY[generator.family]
    kind, run_pipeline = entry.writes, pipeline(entry)
    # The text side: a video family's frozen T2I base, or the token model's own config.
    base = generator.config if kind == "tokens" else generator.base.config
    space = base.tokenizer if kind == "tokens" else base.vae  # the autoencoder whose latents (or ids) it makes
    sampling = {k: v for k, v in options.items() if k not in ("height", "width", *ADDONS)}
    if "height" in options or "width" in options:
        trained = (base.token_height, base.token_width) if kind == "tokens" else (base.sample_size, base.sample_size)
        sampling["size"] = latent_grid(options.get("height"), options.get("width"), trained, space,
                                       getattr(generator, "latent_multiple", 1), hint=getattr(base, "vae_path", None))
    if kind != "tokens" and "fps" in options:
        if options["fps"] != generator.fps:
            raise UserError(f"{folder.name} samples at {generator.fps:g} fps, the rate it was trained at (it is not "
                            f"conditioned on a frame rate); drop --fps or pass --fps {generator.fps:g}")
        del sampling["fps"]
    trained_path = getattr(base, "text_encoder_path", "")
    if text_encoder is None and embeddings is None and trained_path and Path(trained_path).is_dir():
        text_encoder = Path(trained_path)  # the encoder it was trained with (a Stable Diffusion text_encoder/, say)
    encoder = matching_encoder(embeddings, text_encoder, folder=folder, trained_with=base.text_encoder,
                               dim=base.text_dim if kind == "tokens" else base.cross_attention_dim, device=device,
                               max_length=base.text_max_length, dtype=dtype,
                               text_embeds_dim=None if kind == "tokens" else base.text_embeds_dim)
    if encoder.name != base.text_encoder:
        console().print(f"[yellow]{folder} was trained with {base.text_encoder}; using {encoder.name}[/]")
    prompts = encode_prompts(encoder, items, batch_size)  # with an SDXL base's pooled embeddings
    texts, masks, null = prompts.tokens, prompts.mask, prompts.null
    del encoder
    release(device)
    generator.to(device)
    compile_if_asked(generator, "forward" if kind == "tokens" else "predict", device)
    if max_memory is not None:
        batch_size = _planned_batch(generator, kind, sampling, max_memory, device, min(batch_size, len(items)))
    batches = [list(range(i, min(i + batch_size, len(items)))) for i in range(0, len(items), batch_size)]
    results = []
    with progress_bar("sampling", total=steps * len(batches)) as done, torch.inference_mode():
        for n, whole in enumerate(batches):
            def run(batch: list[int], n: int = n):
                noise = [torch.Generator().manual_seed(seed + i) for i in batch]
                return run_pipeline(generator, texts[batch].to(device), masks[batch].to(device), *null, steps=steps,
                                    generator=noise, progress=lambda k: done(n * steps + k), **sampling,
                                    **prompts.pooled(batch, device))

            # Item i depends on seed + i alone, so a batch split after an out-of-memory error is exact.
            results.extend(retry_in_halves(run, whole, what="generate"))
    tag = checkpoint.model_tag(folder)
    if kind == "tokens":  # token ids [B, t, h, w] of the tokenizer, which decode finds by its tag
        fps, frames = options.get("fps", base.fps), results[0].frames
        tensors = {"tokens": torch.cat([r.tokens for r in results]).cpu().to(torch.int32)}
        params = {**options, "frames": frames, "steps": steps, "sampler": "masked"}
        length = f"{tensors['tokens'].shape[1]} token frames → {frames} frames"
        shape = (1, *tensors["tokens"].shape[2:])
    else:
        fps = results[0].fps  # the rate of what the pipeline returns
        tensors = {"latents": torch.cat([r.latents for r in results]).cpu().float()}
        sampler = options.get("scheduler", "ddim")
        params = {**{k: v for k, v in options.items() if k != "scheduler"}, "steps": steps, "sampler": sampler}
        length, shape = f"{tensors['latents'].shape[2]} frames", tuple(tensors["latents"].shape[i] for i in (1, 3, 4))
    extra = {"generator": tag}
    if getattr(base, "vae_path", ""):  # where decode looks first for the autoencoder `space` names
        extra["model_path"] = base.vae_path
    tf = tensorfile.TensorFile(kind=kind, tensors=tensors, model=space, fps=fps, seed=seed, params=params,
                               extra=extra)
    tf.set_prompts(items)
    tensorfile.save(tf, out)
    rate = f", {fps:g} fps" if fps else ""
    console().print(f"[green]{kind}[/] {len(items)} × {length} ({'×'.join(map(str, shape))}{rate}) from {tag}, "
                    f"{steps} steps, cfg {options.get('cfg', 'default')}, seed {seed}, "
                    f"{time.monotonic() - started:.1f} s → {'stdout' if out == '-' else out}", soft_wrap=True)


def _planned_batch(generator, kind: str, options: dict, max_memory: str, device: str, batch_size: int) -> int:
    """The sub-batch of prompts that `vidtool.memory.plan_batch` fits under `max_memory` (a size or
    'auto'): each sample's latent positions are its frames times the latent (or token) grid."""
    from stages.context import console
    from vidtool.memory import device_budget, parse_memory, plan_batch

    c = generator.config
    if kind == "tokens":
        frames = options.get("frames") or c.token_frames * c.temporal_factor
        height, width = options.get("size") or (c.token_height, c.token_width)
        positions = frames // c.temporal_factor * height * width
    else:
        frames = options.get("frames") or (c.keyframes if kind == "keyframes" else c.frames)
        height, width = options.get("size") or (c.base.sample_size, c.base.sample_size)
        positions = frames * height * width
    budget = parse_memory(max_memory) or device_budget(device)
    planned = plan_batch(generator, positions, budget, batch_size)
    console().print(f"memory plan for {budget / 2**30:.2f} GiB: {planned} prompt(s) at a time")
    return planned


def latent_grid(height: int | None, width: int | None, trained: tuple[int, int], autoencoder: str,
                multiple: int = 1, hint: str | None = None) -> tuple[int, int]:
    """--height/--width in pixels (an unset one: the training size) → the generator's latent grid
    (h, w). Each must be a multiple of the autoencoder's spatial factor, times `multiple` where the
    generator's own layers need more (Attn3D windows)."""
    from vidtool import checkpoint, model_store
    from vidtool.errors import UserError

    factor = checkpoint.spatial_factor(model_store.find_by_tag(autoencoder, hint=hint))
    step = factor * multiple
    grid = []
    for name, pixels, cells in (("height", height, trained[0]), ("width", width, trained[1])):
        pixels = cells * factor if pixels is None else pixels
        if pixels < step or pixels % step:
            lower = max(step, pixels // step * step)
            need = f"the spatial factor {factor} of {autoencoder}" + (f" × {multiple} for the Attn3D windows"
                                                                      if multiple > 1 else "")
            raise UserError(f"--{name} {pixels} is not a multiple of {step} ({need}); try {lower} or {lower + step}")
        grid.append(pixels // factor)
    return grid[0], grid[1]
