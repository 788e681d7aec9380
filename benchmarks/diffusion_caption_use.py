"""How much the latent-diffusion generators (FusionFrames' keyframe model, HARIVO, the T2I base)
listen to each part of the caption: the counterpart of motionaura_caption_use.py.

On held-out `shapes` clips (generator seed 1, never trained on), encoded by the generator's own
autoencoder, the denoising loss (L_simple) is measured with the true caption, with its direction
swapped (left↔right, up↔down: the clip played backwards), with its colour swapped, and with the
empty prompt — the same noise and timesteps for every variant. Timesteps come from [--t-min, 1000),
where the noise hides what the clip shows and only the caption can say it. A model that follows a
word denoises its clips better with the true word: the loss rises when the word is swapped, and
most clips score lower with the true caption. A rise near 0 with about half the clips lower means
the word is ignored, and no sampler setting will make the videos follow it.

Keyframe models are scored on keyframes `frame_skip` apart from each clip's first frame, HARIVO
models on whole clips, T2I models on each clip's first frame.

    python benchmarks/diffusion_caption_use.py                       # the bundled keyframes, harivo, t2i
    python benchmarks/diffusion_caption_use.py --model runs/tiny/keyframes --n 192
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from motionaura_caption_use import swap_colour, swap_direction

DEFAULT_MODELS = ("keyframes-tiny", "harivo-tiny", "t2i-tiny")


def main() -> None:
    import torch
    from einops import rearrange

    from vidtool import checkpoint, model_store
    from vidtool.data.latents import LatentDataset, build_latent_set
    from vidtool.data.make import make_dataset
    from vidtool.data.manifest import read_manifest
    from vidtool.diffusion.schedulers import diffusion_pair
    from vidtool.text import TextEncoder

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, action="append", default=None,
                        help="keyframes, harivo or t2i folder, repeatable (default: the three bundled ones)")
    parser.add_argument("--n", type=int, default=96, help="held-out clips")
    parser.add_argument("--seed", type=int, default=1, help="data generator seed (training used 0)")
    parser.add_argument("--t-min", type=int, default=300, help="lowest timestep scored")
    args = parser.parse_args()

    torch.set_grad_enabled(False)
    folders = args.model or [model_store.BUNDLED / name for name in DEFAULT_MODELS]
    encoder = TextEncoder()
    latents: dict[str, torch.Tensor] = {}  # autoencoder tag -> the clips' unscaled latents [N, C, 16, h, w]
    with tempfile.TemporaryDirectory() as tmp:
        make_dataset("shapes", Path(tmp) / "clips", args.n, frames=16, size=64, fps=8.0, seed=args.seed)
        manifest = Path(tmp) / "clips" / "manifest.jsonl"
        captions = [record["caption"] for record in read_manifest(manifest)]
        variants = {"direction swapped": [swap_direction(c) for c in captions],
                    "colour swapped": [swap_colour(c) for c in captions], "empty prompt": [""] * len(captions)}
        embedded = {"true caption": encoder.encode(captions)} | {k: encoder.encode(v) for k, v in variants.items()}
        print(f"{args.n} held-out shapes clips (seed {args.seed}), timesteps in [{args.t_min}, 1000); "
              "loss rise over the true caption, and in brackets the share of clips whose loss is lower with the true one")
        for folder in folders:
            model = checkpoint.from_pretrained(folder).eval()
            if model.family not in ("keyframes", "harivo", "t2i"):
                raise SystemExit(f"{folder} is a {model.family} model; this reads keyframes, harivo and t2i models")
            config = model.config.base if model.family == "keyframes" else model.config
            if config.vae not in latents:
                out = Path(tmp) / f"latents-{len(latents)}.safetensors"
                build_latent_set([manifest], model_store.find_by_tag(config.vae), out, frames=16, size=64, fps=8.0)
                latents[config.vae] = LatentDataset(out, latent_scale=1.0).latents.float()
            clips = latents[config.vae] * config.latent_scale
            if model.family == "keyframes":
                clean = clips[:, :, :model.config.span:model.config.frame_skip]
            elif model.family == "harivo":
                clean = clips[:, :, :model.config.frames]
            else:
                clean = clips[:, :, 0]
            generator = torch.Generator().manual_seed(0)
            timesteps = torch.randint(args.t_min, config.schedule.train_timesteps, (args.n,), generator=generator)
            noisy, timesteps, target = diffusion_pair(config.schedule, clean, generator=generator, timesteps=timesteps)

            def losses(text) -> torch.Tensor:
                per_clip = []
                for s in range(0, args.n, 16):
                    part = slice(s, s + 16)
                    prediction = model.predict(noisy[part], timesteps[part], text.tokens[part], text.mask[part])
                    per_clip.append(rearrange((prediction - target[part]) ** 2, "b ... -> b (...)").mean(1))
                return torch.cat(per_clip)

            true = losses(embedded["true caption"])
            cells = []
            for name in variants:
                other = losses(embedded[name])
                rise = (other.mean() / true.mean() - 1).item()
                cells.append(f"{name} {100 * rise:+.2f}% ({100 * (true < other).float().mean().item():.0f}%)")
            print(f"  {checkpoint.model_tag(folder)} ({model.family}): true caption {true.mean().item():.4f}; "
                  + ", ".join(cells))


if __name__ == "__main__":
    main()
