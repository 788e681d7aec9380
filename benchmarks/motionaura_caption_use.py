"""How much MotionAura's generator listens to each part of the caption.

On held-out `shapes` clips (generator seed 1, never trained on) tokenized by the model's own
tokenizer, the masked cross-entropy L_diff (§3.2) of the true tokens is measured with the true
caption, with its direction swapped (left↔right, up↔down), with its colour swapped, and with the
empty prompt — the same masked places for every variant. The rise over the true caption says how
many nats per masked token each part of the caption is worth to the model: a generator that ignores
the direction word cannot be steered by it, whatever the sampler does.

    python benchmarks/motionaura_caption_use.py                 # the bundled motionaura-tiny, 48 clips
    python benchmarks/motionaura_caption_use.py --model runs/tiny/spectral --n 96
"""

from __future__ import annotations

import argparse
import re
import tempfile
from pathlib import Path

SWAPPED_DIRECTION = {"left": "right", "right": "left", "up": "down", "down": "up"}


def swap_direction(caption: str) -> str:
    return re.sub(r"moving (left|right|up|down)", lambda m: f"moving {SWAPPED_DIRECTION[m.group(1)]}", caption)


def swap_colour(caption: str) -> str:
    """The object's colour (the caption's first word after "a") → red, or blue when it is red."""
    words = caption.split(" ")
    words[1] = "blue" if words[1] == "red" else "red"
    return " ".join(words)


def main() -> None:
    import torch

    from vidtool import checkpoint, model_store
    from vidtool.data.make import make_dataset
    from vidtool.data.manifest import read_manifest
    from vidtool.data.tokens import build_token_set
    from vidtool.diffusion.masked import corrupt, masked_cross_entropy
    from vidtool.tensorfile import load
    from vidtool.text import TextEncoder

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="spectral model folder (default: the bundled one)")
    parser.add_argument("--n", type=int, default=48, help="held-out clips")
    parser.add_argument("--seed", type=int, default=1, help="data generator seed (training used 0)")
    parser.add_argument("--times", type=float, nargs="+", default=[0.5, 0.95],
                        help="diffusion times t (fraction masked: the cosine schedule's sin(πt/2))")
    args = parser.parse_args()

    torch.set_grad_enabled(False)
    folder = args.model or model_store.default_model("motionaura")
    model = checkpoint.from_pretrained(folder).eval()
    config = model.config
    frames = config.token_frames * config.temporal_factor
    tokenizer = model_store.find_by_tag(config.tokenizer)
    size = config.token_height * checkpoint.from_pretrained(tokenizer).spatial_factor
    with tempfile.TemporaryDirectory() as tmp:
        make_dataset("shapes", Path(tmp) / "clips", args.n, frames=frames, size=size, fps=config.fps, seed=args.seed)
        manifest = Path(tmp) / "clips" / "manifest.jsonl"
        captions = [record["caption"] for record in read_manifest(manifest)]
        tokens_file = build_token_set([manifest], tokenizer, Path(tmp) / "tokens.safetensors",
                                      frames=frames, size=size, fps=config.fps)
        tokens = load(tokens_file).tensors["tokens"].long()
    encoder = TextEncoder(max_length=config.text_max_length)
    variants = {"true caption": captions, "direction swapped": [swap_direction(c) for c in captions],
                "colour swapped": [swap_colour(c) for c in captions], "empty prompt": [""] * len(captions)}
    embedded = {name: encoder.encode(texts) for name, texts in variants.items()}
    b, t, h, w = tokens.shape
    clean = tokens.reshape(b, -1)
    fps = torch.full((b,), float(config.fps))
    print(f"model {checkpoint.model_tag(folder)}, {b} held-out clips (seed {args.seed}), {t}×{h}×{w} tokens")
    print("masked cross-entropy (nats per masked token); in brackets the rise over the true caption")
    for time in args.times:
        torch.manual_seed(0)  # the same masked places for every variant
        z_t, masked = corrupt(clean, torch.full((b,), time), model.schedule, model.mask_id)
        losses = {}
        for name, text in embedded.items():
            logits = model(z_t.reshape(b, t, h, w), torch.full((b,), time), fps, text.tokens, text.mask)
            losses[name] = masked_cross_entropy(logits, clean, masked).item()
        row = ", ".join(f"{name} {loss:.4f}" + ("" if name == "true caption" else
                                                 f" (+{loss - losses['true caption']:.4f})")
                        for name, loss in losses.items())
        print(f"  t = {time:.2f} ({float(model.schedule.ratio(torch.tensor(time))):.0%} masked): {row}")


if __name__ == "__main__":
    main()
