"""Issue 31's diagnostics: why FusionFrames' keyframe model draws the asked colour but moves the
shape the asked way only at chance. Each subcommand is one measurement, on CPU, in minutes.

    motion    how far the primary shape moves between keyframes (frames 0, 4, 8, 12 of 16-frame
              8 fps clips: 2 fps, skip 4), from the masks `make-dataset shapes` writes, in pixels
              and in latent cells of movq-tiny (x8 spatial); and the probe's direction hit rate on
              the real keyframes alone (what a perfect keyframe model would score)
    interp    real keyframes (a clip encoded by movq-tiny, every 4th latent frame) through the bundled
              interp-tiny and decoded: is the direction preserved, and do in-betweens sit between
              their keyframes (a frame-order check)
    overfit   the keyframe model (frozen t2i-tiny base + fresh, zero-initialised temporal blocks, as
              the recipe trains it) overfit on 8 clips, two per direction: logs the zero-initialised
              output projections ("merges") and per-block gradient norms, then samples each clip's
              caption and probes the direction; `--text onehot` adds a one-hot direction token to
              the MiniLM tokens, `--unfreeze-base` trains the U-Net too, `--unfreeze-cross-attention`
              only the base's text cross-attention (attn2: what the frozen base reads of the prompt)
    sketch    the bundled sketch-inpainting adapter's training loss on a few batches, with the
              sketch as given and zeroed (same noise): does the sketch reach the model

    python benchmarks/direction_diagnostics.py motion
    python benchmarks/direction_diagnostics.py interp --clips 24
    python benchmarks/direction_diagnostics.py overfit --steps 600
    python benchmarks/direction_diagnostics.py overfit --steps 600 --text onehot
    python benchmarks/direction_diagnostics.py overfit --steps 600 --unfreeze-base
    python benchmarks/direction_diagnostics.py overfit --steps 1500 --unfreeze-cross-attention
    python benchmarks/direction_diagnostics.py overfit --steps 0 --init bundled   # the bundled model as is
    python benchmarks/direction_diagnostics.py sketch
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

KEYFRAME_SKIP, CLIP_FRAMES, SIZE = 4, 16, 64
DATA = Path("/tmp/vidtool-direction-diagnostics")


def shapes_set(n: int, seed: int = 0) -> Path:
    """A manifest of the first `n` clips of one shapes set (made once, 200 clips or more, so that
    subcommands run side by side never rewrite each other's manifest)."""
    from vidtool.data.make import make_dataset
    from vidtool.data.manifest import read_manifest, write_manifest

    full = make_dataset("shapes", DATA / f"shapes-{seed}", max(n, 200), frames=CLIP_FRAMES, size=SIZE, seed=seed)
    first = full.parent / f"first-{n}.jsonl"
    if not first.exists():
        write_manifest(first, read_manifest(full)[:n])
    return first


def probe_directions(videos: np.ndarray, captions: list[str]) -> tuple[np.ndarray, list]:
    """Direction hits (bool [N]) of uint8 clips [N, T, H, W, 3] against their captions, and the readings."""
    from vidtool.metrics.shapes_probe import hits, prompt_target, read_clip

    readings = [read_clip(v) for v in videos]
    targets = np.stack([prompt_target(c) for c in captions])
    return hits(np.stack([r.as_indices() for r in readings]), targets)[:, 2], readings


def load_masks(manifest: Path, record: dict) -> np.ndarray:
    from vidtool.data.manifest import resolve

    with np.load(resolve(manifest, record["mask"])) as arrays:
        return arrays["mask"]


def motion(args) -> None:
    from vidtool.data.clips import ClipDataset
    from vidtool.data.manifest import read_manifest

    manifest = shapes_set(args.clips)
    records = read_manifest(manifest)
    steps, totals = [], []
    for record in records:
        mask = load_masks(manifest, record).astype(bool)
        centres = np.array([[np.nonzero(m)[1].mean(), np.nonzero(m)[0].mean()] if m.any() else [np.nan, np.nan]
                            for m in mask])
        keys = centres[::KEYFRAME_SKIP]
        steps.append(np.linalg.norm(np.diff(keys, axis=0), axis=1))
        totals.append(np.linalg.norm(keys[-1] - keys[0]))
    steps, totals = np.concatenate(steps), np.array(totals)
    print(f"{len(records)} clips, {CLIP_FRAMES} frames at 8 fps, {SIZE}x{SIZE}; keyframes 0,4,8,12 (2 fps)")
    print(f"  shape travel between consecutive keyframes: mean {steps.mean():.2f} px, median {np.median(steps):.2f}, "
          f"min {steps.min():.2f}, max {steps.max():.2f} = mean {steps.mean() / 8:.2f} latent cells (movq x8)")
    print(f"  first to last keyframe: mean {totals.mean():.2f} px ({totals.mean() / 8:.2f} cells), "
          f"share under one latent cell per keyframe step: {(steps < 8).mean():.1%}")
    dataset = ClipDataset(manifest, frames=CLIP_FRAMES, size=SIZE)
    videos = np.stack([dataset[i]["video"].numpy() for i in range(len(records))])
    captions = [r["caption"] for r in records]
    full, _ = probe_directions(videos, captions)
    keys, _ = probe_directions(videos[:, ::KEYFRAME_SKIP], captions)
    print(f"  probe direction hit: full 16-frame clips {full.mean():.1%}, their 4 keyframes alone {keys.mean():.1%}")


def interp(args) -> None:
    from vidtool.autoencoders.apply import decode_frames, encode_frames
    from vidtool.autoencoders.tiling import default_tiling
    from vidtool.checkpoint import from_pretrained
    from vidtool.data.clips import ClipDataset
    from vidtool.data.manifest import read_manifest
    from vidtool.model_store import BUNDLED
    from vidtool.pipelines.fusionframes import interpolate

    manifest = shapes_set(args.clips)
    records = read_manifest(manifest)
    dataset = ClipDataset(manifest, frames=CLIP_FRAMES, size=SIZE)
    videos = np.stack([dataset[i]["video"].numpy() for i in range(len(records))])
    captions = [r["caption"] for r in records]
    vae = from_pretrained(BUNDLED / "movq-tiny").eval()
    model = from_pretrained(BUNDLED / "interp-tiny").eval()
    tiling = default_tiling(vae)

    def decode(latents):
        return np.concatenate(list(decode_frames(vae, latents, tiling, "cpu")), axis=1)

    with torch.inference_mode():
        latents = encode_frames(vae, videos[:, :13], tiling, "cpu").latents  # frames 0..12: keyframes 0,4,8,12
        keyframes = latents[:, :, ::KEYFRAME_SKIP]
        round_trip = decode(latents)
        generator = torch.Generator().manual_seed(0)
        filled = interpolate(model, keyframes, steps=args.steps, generator=generator).latents
        interpolated = decode(filled)
    rows = {"real frames 0..12": videos[:, :13], "movq round trip of frames 0..12": round_trip,
            "real keyframes -> interp-tiny -> decode": interpolated}
    print(f"{len(records)} held-in shapes clips; interp-tiny with {args.steps} DDIM steps, skip 3, context guidance")
    plain = np.array([not r["background"] for r in records])  # the probe's home ground (alignment_ceiling.py)
    print(f"  ({plain.sum()} of them on the plain dark background)")
    for name, clip in rows.items():
        hit, readings = probe_directions(clip, captions)
        between = _between(readings)
        print(f"  {name:42s} direction hit {hit.mean():6.1%} (plain background {hit[plain].mean():6.1%})   "
              f"in-betweens between their keyframes {between:6.1%}")


def _between(readings) -> float:
    """Share of in-between frames (4j+1..4j+3) whose centroid lies, along the keyframes' motion, between
    keyframes 4j and 4j+4 (with a 1-pixel slack): in-betweens in the wrong order or the wrong pair fail."""
    inside = []
    for r in readings:
        track = r.track
        for j in range(0, len(track) - 4, 4):
            a, b = track[j], track[j + 4]
            axis = b - a
            length = np.linalg.norm(axis)
            if not np.isfinite(length) or length < 1:
                continue
            for k in range(1, 4):
                p = track[j + k]
                if np.isfinite(p).all():
                    along = float(np.dot(p - a, axis / length))
                    inside.append(-1 <= along <= length + 1)
    return float(np.mean(inside)) if inside else float("nan")


def overfit_set(per_direction: int, seed: int = 0) -> tuple[Path, list[dict]]:
    """A latent set (movq-tiny, the generators' latent space, built as train-denoiser builds one) of
    `per_direction` clips for each direction, on the plain background so the probe reads them (from
    the shapes set of `seed`: 1 for clips the model never trained on)."""
    from vidtool.data.latents import build_latent_set
    from vidtool.data.manifest import read_manifest, write_manifest
    from vidtool.data.shapes import DIRECTIONS
    from vidtool.model_store import BUNDLED

    manifest = shapes_set(max(200, 24 * per_direction), seed)
    chosen = []
    for direction in DIRECTIONS:
        chosen += [r for r in read_manifest(manifest) if r["direction"] == direction and not r["background"]
                   and "slowly" not in r["caption"]][:per_direction]
    subset = manifest.parent / f"overfit-{per_direction}.jsonl"
    if len(chosen) < 4 * per_direction:
        raise SystemExit(f"the shapes set has only {len(chosen)} plain-background clips for {per_direction} per direction")
    write_manifest(subset, chosen)
    out = subset.with_suffix(".latents.safetensors")
    if not out.exists():
        build_latent_set([subset], BUNDLED / "movq-tiny", out, frames=CLIP_FRAMES, size=SIZE)
    return out, chosen


def one_hot_direction(text: torch.Tensor, mask: torch.Tensor, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """MiniLM tokens with one more token, a one-hot of the caption's direction (at the norm of the
    caption's tokens), written into the last (padding) slot: a direction signal the text encoder
    cannot blur. Diagnostic only."""
    from vidtool.data.shapes import DIRECTIONS
    from vidtool.metrics.shapes_probe import parse_prompt

    text, mask = text.clone(), mask.clone()
    norm = text[mask].norm(dim=-1).mean()
    for i, prompt in enumerate(prompts):
        parsed = parse_prompt(prompt)
        text[i, -1] = 0
        if parsed is not None:
            text[i, -1, DIRECTIONS.index(parsed[2])] = norm
            mask[i, -1] = True
    return text, mask


class TemporalDirection:
    """Diagnostic only: a learned row per direction (zero-initialised) added to every keyframe's position
    embedding, which only the temporal blocks read: the prompt's direction handed to them directly,
    past the text encoder and the frozen base. `ids` is set from the prompts before each prediction;
    a batch twice as long (classifier-free guidance's conditional + unconditional halves) gets the
    no-direction row for its second half."""

    def __init__(self, model):
        from torch import nn

        model.direction_table = nn.Embedding(5, model.config.position_dim)  # 4 directions + none
        nn.init.zeros_(model.direction_table.weight)
        self.table, self.ids = model.direction_table, None
        model.frame_positions.register_forward_hook(self._hook)

    @staticmethod
    def direction_ids(prompts: list[str]) -> torch.Tensor:
        from vidtool.data.shapes import DIRECTIONS
        from vidtool.metrics.shapes_probe import parse_prompt

        return torch.tensor([DIRECTIONS.index(parse_prompt(p)[2]) if parse_prompt(p) else 4 for p in prompts])

    def _hook(self, module, args, out):
        ids = self.ids
        if out.shape[0] == 2 * len(ids):
            ids = torch.cat([ids, torch.full_like(ids, 4)])
        return out + self.table(ids)[:, None, :].to(out.dtype)


def _merges(model) -> dict[str, float]:
    """Norm of each temporal block's zero-initialised output projection (its "merge" into the U-Net)."""
    out = {}
    for key, block in model.temporal.items():
        last = block.out if hasattr(block, "out") else block.layers[-1] if hasattr(block, "layers") else block.up
        out[key] = float(last.weight.detach().norm())
    return out


def _grad_norms(model) -> dict[str, float]:
    groups: dict[str, float] = {}
    for name, p in model.named_parameters():
        if p.grad is None:
            continue
        parts = name.split(".")
        key = parts[1] if parts[0] == "temporal" else parts[0]
        groups[key] = groups.get(key, 0.0) + float(p.grad.norm()) ** 2
    return {k: v**0.5 for k, v in groups.items()}


def _batch(data, device="cpu") -> dict:
    items = [data[i] for i in range(len(data))]
    batch = {k: torch.stack([it[k] for it in items]) for k in ("latents", "text", "text_mask", "null_text", "null_mask")}
    batch["prompt"] = [it["prompt"] for it in items]
    return batch


def _swap_direction(prompt: str) -> str:
    opposite = {"left": "right", "right": "left", "up": "down", "down": "up"}
    for word, other in opposite.items():
        if f"moving {word}" in prompt:
            return prompt.replace(f"moving {word}", f"moving {other}")
    return prompt


@torch.no_grad()
def _direction_loss_gap(model, batch, text_fn, repeats: int = 16) -> tuple[float, float]:
    """Epsilon loss with the right caption and with the opposite direction's caption, on the same
    keyframes, noise and timesteps: a model that reads direction from the text loses more with the
    wrong one."""
    from vidtool.diffusion.schedulers import diffusion_pair
    from vidtool.generators.keyframes import sample_keyframes

    right_text, right_mask = text_fn(batch["text"], batch["text_mask"], batch["prompt"])
    wrong_text, wrong_mask = text_fn(*_encode([_swap_direction(p) for p in batch["prompt"]]),
                                     [_swap_direction(p) for p in batch["prompt"]])
    right = wrong = 0.0
    for r in range(repeats):
        torch.manual_seed(1000 + r)
        keys = sample_keyframes(batch["latents"], model.config.keyframes, model.config.frame_skip)
        noisy, timesteps, target = diffusion_pair(model.config.base.schedule, keys)
        right += float(torch.nn.functional.mse_loss(model.predict(noisy, timesteps, right_text, right_mask), target))
        wrong += float(torch.nn.functional.mse_loss(model.predict(noisy, timesteps, wrong_text, wrong_mask), target))
    return right / repeats, wrong / repeats


_ENCODER = None


def _encode(prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    global _ENCODER
    from vidtool.text_cache import text_encoder_or_cache

    if _ENCODER is None:
        _ENCODER = text_encoder_or_cache(None, None, device="cpu", max_length=None)
    embedded = _ENCODER.encode(prompts)
    return embedded.tokens.float(), embedded.mask


def motion_weighted_loss(model, batch: dict, weight: float, weighting: str = "eps", cap: float = 50.0) -> torch.Tensor:
    """The keyframe model's epsilon MSE plus `weight` x the MSE of its error's differences between
    consecutive keyframes. The epsilon error is the x0 error times a per-sample factor, so its frame
    differences are the error in how the clip moves; the plain MSE is dominated by the part every
    keyframe shares (where the shape is, what it looks like), which the prompt's direction does not
    decide. `weighting` "x0" scores those differences in x0 units instead (the epsilon error times
    sigma_t / alpha_t, its square capped at `cap`): the epsilon loss weighs an x0 error by the
    signal-to-noise ratio, next to nothing at the high noise levels where a sampler commits to a
    direction. Noise is drawn with the model's own prior (noise_correlation)."""

    from vidtool.diffusion.noise import frame_noise_like
    from vidtool.diffusion.schedulers import diffusion_pair
    from vidtool.generators.keyframes import sample_keyframes as pick_keyframes
    from vidtool.generators.t2i import drop_conditions

    keyframes = pick_keyframes(batch["latents"], model.config.keyframes, model.config.frame_skip)
    text, mask, pooled = drop_conditions(batch, model.config.cond_dropout)
    noise = frame_noise_like(keyframes, model.config.noise_correlation)
    schedule = model.config.base.schedule
    noisy, timesteps, target = diffusion_pair(schedule, keyframes, noise=noise)
    error = model.predict(noisy, timesteps, text, mask, text_embeds=pooled) - target  # [B, C, F, h, w]
    moving = error.diff(dim=2).pow(2).mean(dim=(1, 2, 3, 4))
    if weighting == "x0":
        alpha_bar = schedule.training_scheduler().alphas_cumprod[timesteps].float()
        moving = moving * ((1 - alpha_bar) / alpha_bar).clamp(max=cap)
    return error.pow(2).mean() + weight * moving.mean()


def contrastive_loss(model, batch: dict, swapped: tuple[torch.Tensor, torch.Tensor], weight: float,
                     margin: float) -> torch.Tensor:
    """The epsilon MSE with the true caption, plus `weight` x a hinge that pays for reading the direction:
    on the same noisy keyframes, the loss with the caption's direction reversed (`swapped`: its
    encoded tokens and mask) must exceed the true caption's loss by `margin` per clip. Noise is drawn
    with the model's own prior (noise_correlation)."""
    from vidtool.diffusion.noise import frame_noise_like
    from vidtool.diffusion.schedulers import diffusion_pair
    from vidtool.generators.keyframes import sample_keyframes as pick_keyframes

    keyframes = pick_keyframes(batch["latents"], model.config.keyframes, model.config.frame_skip)
    noise = frame_noise_like(keyframes, model.config.noise_correlation)
    noisy, timesteps, target = diffusion_pair(model.config.base.schedule, keyframes, noise=noise)
    right = (model.predict(noisy, timesteps, batch["text"], batch["text_mask"]) - target).pow(2).mean(dim=(1, 2, 3, 4))
    wrong = (model.predict(noisy, timesteps, *swapped) - target).pow(2).mean(dim=(1, 2, 3, 4))
    return right.mean() + weight * torch.relu(margin + right - wrong).mean()


def overfit(args) -> None:
    from vidtool.autoencoders.apply import decode_frames
    from vidtool.autoencoders.tiling import default_tiling
    from vidtool.checkpoint import from_pretrained
    from vidtool.data.latents import LatentDataset
    from vidtool.generators.keyframes import KeyframeModel, preset
    from vidtool.model_store import BUNDLED
    from vidtool.pipelines.fusionframes import sample_keyframes

    path, records = overfit_set(args.per_direction)
    base = from_pretrained(BUNDLED / "t2i-tiny")
    data = LatentDataset(path, latent_scale=base.config.latent_scale)
    batch = _batch(data)
    config = preset("tiny", noise_correlation=args.noise_correlation)
    config.base = base.config
    torch.manual_seed(args.seed)
    model = KeyframeModel(config)
    model.base.load_state_dict(base.state_dict())
    if args.init == "bundled":
        model.load_state_dict(from_pretrained(BUNDLED / "keyframes-tiny").state_dict())
    model.base.requires_grad_(args.unfreeze_base)
    if args.unfreeze_cross_attention:
        for name, p in model.base.named_parameters():
            p.requires_grad_(args.unfreeze_base or ".attn2." in name)
    temporal_direction = TemporalDirection(model) if args.text == "onehot-temporal" else None
    trainable = [p for p in model.parameters() if p.requires_grad]
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    print(f"{len(records)} clips: " + "; ".join(r["caption"] for r in records))
    state = "unfrozen" if args.unfreeze_base else "frozen but its cross-attention" if args.unfreeze_cross_attention else "frozen"
    print(f"text {args.text}, base {state}, init {args.init}: "
          f"{sum(p.numel() for p in trainable):,} trainable parameters, {frozen:,} frozen; AdamW lr {args.lr}, "
          f"{args.steps} full-batch updates")

    def text_fn(text, mask, prompts):
        if temporal_direction is not None:
            temporal_direction.ids = temporal_direction.direction_ids(prompts)
        return one_hot_direction(text, mask, prompts) if args.text == "onehot" else (text, mask)

    def report_gap(label):
        right, wrong = _direction_loss_gap(model.eval(), batch, text_fn)
        model.train()
        print(f"  {label}: loss with the right caption {right:.4f}, with the opposite direction {wrong:.4f} "
              f"(gap {wrong - right:+.4f})")

    report_gap("step 0")
    optimizer = torch.optim.AdamW(trainable, lr=args.lr, weight_decay=0.0)
    model.train()
    started = time.perf_counter()
    for step in range(1, args.steps + 1):
        step_batch = dict(batch)
        if args.batch:
            pick = torch.randperm(len(batch["prompt"]))[:args.batch]
            step_batch = {k: [v[i] for i in pick] if k == "prompt" else v[pick] for k, v in batch.items()}
        step_batch["text"], step_batch["text_mask"] = text_fn(step_batch["text"], step_batch["text_mask"], step_batch["prompt"])
        if args.contrast:
            swapped = [_swap_direction(prompt) for prompt in step_batch["prompt"]]
            loss = contrastive_loss(model, step_batch, text_fn(*_encode(swapped), swapped), args.contrast, args.margin)
        else:
            loss = (motion_weighted_loss(model, step_batch, args.motion_loss, args.motion_weighting) if args.motion_loss
                    else model.training_losses(step_batch, step=step, total_steps=args.steps)["loss"])
        optimizer.zero_grad()
        loss.backward()
        if step in (1, 10) or step % args.log_every == 0:
            grads = _grad_norms(model)
            merges = _merges(model)
            temporal = {k: v for k, v in grads.items() if k in merges}
            print(f"step {step:5d} loss {float(loss.detach()):.4f}  grad-norm temporal blocks "
                  f"min {min(temporal.values()):.2e} max {max(temporal.values()):.2e} "
                  f"({len(temporal)}/{len(merges)} receive gradient); frame_positions "
                  f"{grads.get('frame_positions', 0):.2e}; base {grads.get('base', 0):.2e}")
            print("    merge |W_out|: " + " ".join(f"{k.replace('base-unet-', '')}={v:.3f}" for k, v in merges.items()))
        optimizer.step()
    if args.steps:
        print(f"{(time.perf_counter() - started) / args.steps:.2f} s per update")
        report_gap(f"step {args.steps}")

    vae = from_pretrained(BUNDLED / "movq-tiny").eval()
    model.eval()
    if args.eval_held_out:
        records = overfit_set(args.eval_held_out, seed=1)[1]
        print(f"sampling the captions of {len(records)} held-out clips (shapes seed 1)")
    captions = [r["caption"] for r in records] * args.seeds
    text, mask = text_fn(*_encode(captions), captions)
    null_text, null_mask = _encode([""])
    generators = [torch.Generator().manual_seed(i) for i in range(len(captions))]
    with torch.inference_mode():
        keys = sample_keyframes(model, text, mask, null_text[0], null_mask[0], steps=args.sample_steps,
                                cfg=args.cfg, generator=generators).latents
        videos = np.concatenate(list(decode_frames(vae, keys, default_tiling(vae), "cpu")), axis=1)
    hit, readings = probe_directions(videos, captions)
    travel = [np.linalg.norm(np.diff(r.track[~np.isnan(r.track[:, 0])][[0, -1]], axis=0)) for r in readings if r.found]
    from vidtool.metrics.shapes_probe import hits, prompt_target
    all_hits = hits(np.stack([r.as_indices() for r in readings]), np.stack([prompt_target(c) for c in captions]))
    print(f"sampled {len(captions)} keyframe clips ({args.seeds} seeds x {len(records)} captions, cfg {args.cfg}, "
          f"{args.sample_steps} DDIM steps): colour {all_hits[:, 0].mean():.1%}, direction {hit.mean():.1%}, "
          f"colour+direction {all_hits[:, 3].mean():.1%}; found {np.mean([r.found for r in readings]):.1%}; "
          f"mean travel first->last keyframe {np.mean(travel) if travel else float('nan'):.1f} px "
          f"(the real clips: see `motion`)")
    print("  read directions: " + " ".join(f"{c.split(' moving ')[1].split()[0]}->{r.direction}"
                                          for c, r in zip(captions, readings)))


def sketch(args) -> None:
    from vidtool.checkpoint import from_pretrained
    from vidtool.data.tokens import TokenDataset, build_token_set
    from vidtool.model_store import BUNDLED

    manifest = shapes_set(args.clips)
    path = manifest.parent / f"inpaint-{args.clips}.tokens.safetensors"
    if not path.exists():
        build_token_set([manifest], BUNDLED / "mbq-vae-tiny-v1", path, frames=CLIP_FRAMES, size=SIZE, inpainting=True)
    data = TokenDataset(path, inpainting=True)
    model = from_pretrained(BUNDLED / "motionaura-inpaint-tiny").eval()
    items = [data[i] for i in range(len(data))]
    batch = {k: torch.stack([it[k] for it in items]) for k in items[0] if k != "prompt"}
    variants = {"sketch as given": batch["sketch"], "sketch zeroed": torch.zeros_like(batch["sketch"]),
                "another clip's sketch": batch["sketch"].roll(1, dims=0)}
    print(f"{len(items)} shapes clips, {args.repeats} draws of (t, masked tokens, prompt dropout) shared by every "
          f"variant; L_diff and masked-token accuracy inside the hole, bundled motionaura-inpaint-tiny")
    with torch.inference_mode():
        for name, sketches in variants.items():
            losses, accuracies = [], []
            for r in range(args.repeats):
                torch.manual_seed(r)
                out = model.training_losses({**batch, "sketch": sketches}, step=0, total_steps=1)
                losses.append(float(out["loss"]))
                accuracies.append(float(out["masked_accuracy"]))
            print(f"  {name:22s} loss {np.mean(losses):.4f} +- {np.std(losses) / np.sqrt(len(losses)):.4f}   "
                  f"masked accuracy {np.mean(accuracies):.2%}")
        features = model.sketch_tokens(batch["sketch"]).embeddings
        zero = model.sketch_tokens(torch.zeros_like(batch["sketch"])).embeddings
        print(f"  sketch-token embeddings: |given - zeroed| / |given| = {float((features - zero).norm() / features.norm()):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("motion")
    p.add_argument("--clips", type=int, default=200)
    p = commands.add_parser("interp")
    p.add_argument("--clips", type=int, default=24)
    p.add_argument("--steps", type=int, default=25)
    p = commands.add_parser("overfit")
    p.add_argument("--per-direction", type=int, default=2)
    p.add_argument("--motion-loss", type=float, default=0.0, metavar="W",
                   help="add W x the MSE of the epsilon error's differences between consecutive keyframes")
    p.add_argument("--contrast", type=float, default=0.0, metavar="W",
                   help="add W x a hinge: the loss with the direction reversed must exceed the true caption's by --margin")
    p.add_argument("--margin", type=float, default=0.005)
    p.add_argument("--motion-weighting", choices=("eps", "x0"), default="eps",
                   help="--motion-loss in epsilon units, or in x0 units (its square capped at 50)")
    p.add_argument("--batch", type=int, default=0, help="clips per update drawn at random (0: all, full batch)")
    p.add_argument("--eval-held-out", type=int, default=0, metavar="N",
                   help="sample the captions of N held-out clips per direction (shapes seed 1) instead of the training clips")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--text", choices=("minilm", "onehot", "onehot-temporal"), default="minilm",
                   help="onehot: a direction token among the text tokens (read by the frozen base's cross-attention); "
                        "onehot-temporal: a learned direction vector added to the temporal blocks' frame positions")
    p.add_argument("--noise-correlation", type=float, default=0.0, metavar="RHO",
                   help="PYoCo mixed noise prior: keyframes share this fraction of their noise (train and sample)")
    p.add_argument("--unfreeze-base", action="store_true")
    p.add_argument("--unfreeze-cross-attention", action="store_true")
    p.add_argument("--init", choices=("fresh", "bundled"), default="fresh",
                   help="temporal blocks zero-initialised as the recipe starts them, or the bundled keyframes-tiny")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--cfg", type=float, default=5.0)
    p.add_argument("--sample-steps", type=int, default=25)
    p.add_argument("--log-every", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p = commands.add_parser("sketch")
    p.add_argument("--clips", type=int, default=32)
    p.add_argument("--repeats", type=int, default=8)
    args = parser.parse_args()
    torch.manual_seed(0)
    {"motion": motion, "interp": interp, "overfit": overfit, "sketch": sketch}[args.command](args)


if __name__ == "__main__":
    main()
