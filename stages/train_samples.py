"""train-denoiser's validation samples: the same prompts, noise seeds and sampler at every
`--validate-every` updates, through the family's pipeline (vidtool.families) and the decoder of the
training set's latent or token space, so that one run's samples compare across steps."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

SAMPLES_DIR = "samples"


@dataclass
class Validation:
    every: int
    prompts: list[str]
    text: object  # float [N, L, D] on the host
    text_mask: object  # bool [N, L]
    null: tuple  # the empty prompt's (tokens [L, D], mask [L])
    kind: str  # what the pipeline writes: keyframes, latents or tokens
    pipeline: Callable
    decoder: Path  # the autoencoder folder that decodes `kind`
    steps: int | None  # None: the model's own sample_steps, else 25 (as `vidtool generate`)
    seed: int
    device: str
    pooled: dict = field(default_factory=dict)  # an SDXL base's text_embeds, null_text_embeds on the host

    def callback(self, out: Path, on_sheet: Callable | None) -> Callable:
        """train()'s `validate(model, step)`: writes OUT/samples/step-N/{0,1,…}.mp4, contact-sheet.png
        (a row per prompt) and prompts.txt, then hands the sheet to `on_sheet(tag, image, step)`."""
        return lambda model, step: self.render(model, step, out / SAMPLES_DIR / f"step-{step}", on_sheet)

    def render(self, model, step: int, folder: Path, on_sheet: Callable | None) -> None:
        import numpy as np
        import torch
        from PIL import Image

        from stages.decode import decode_tensor
        from vidtool import checkpoint, video
        from vidtool.atomic import atomic_path
        from vidtool.memory import release

        device = next(model.parameters()).device
        steps = self.steps or getattr(model.config, "sample_steps", 25)
        noise = [torch.Generator().manual_seed(self.seed + i) for i in range(len(self.prompts))]
        result = self.pipeline(model, self.text.to(device), self.text_mask.to(device),
                               *(part.to(device) for part in self.null), steps=steps, generator=noise,
                               **{name: tensor.to(device) for name, tensor in self.pooled.items()})
        codes = result.tokens if self.kind == "tokens" else result.latents
        decoder = checkpoint.from_pretrained(self.decoder, device=self.device)
        clips = decode_tensor(decoder, self.kind, codes, device=self.device)
        del decoder
        release(self.device)
        folder.mkdir(parents=True, exist_ok=True)
        for i, clip in enumerate(clips):
            video.write_video(folder / f"{i}.mp4", clip, result.fps or 8.0)
        sheet = np.concatenate([video.contact_sheet(clip, columns=len(clip)) for clip in clips])
        with atomic_path(folder / "contact-sheet.png") as tmp:
            Image.fromarray(sheet).save(tmp, format="PNG")
        (folder / "prompts.txt").write_text("".join(f"{i}: {p}\n" for i, p in enumerate(self.prompts)))
        if on_sheet is not None:
            on_sheet("samples", sheet, step)


def read_prompts(entry, prompts_file: Path) -> list[str]:
    """The validation prompts, refused (before any encoding) for a family with no text-to-video pipeline."""
    from vidtool.data.manifest import read_prompt_lines
    from vidtool.errors import UserError
    from vidtool.families import REGISTRY

    if entry.pipeline is None:
        with_one = ", ".join(f.name for f in REGISTRY.values() if f.pipeline)
        raise UserError(f"--validate-every samples videos from prompts, which {entry.name} does not do alone; "
                        f"it works for {with_one}")
    prompts = read_prompt_lines(prompts_file)
    if not prompts:
        raise UserError(f"{prompts_file} holds no prompts; write one prompt per line")
    return prompts


def prepare(entry, dataset, prompts_file: Path, *, every: int, steps: int | None, text_encoder: Path | None,
            autoencoder: Path | None, seed: int, device: str) -> Validation:
    """Read and embed the prompts before training (the text encoder then leaves the device) and find
    the decoder: `autoencoder` (--vae/--tokenizer) or the one whose tag the training set records."""
    from vidtool import model_store
    from vidtool.families import pipeline
    from vidtool.memory import release
    from vidtool.text_cache import text_encoder_or_cache

    prompts = read_prompts(entry, prompts_file)
    info = dataset.info
    encoder = text_encoder_or_cache(None, text_encoder or getattr(info, "text_encoder_path", "") or None,
                                    device=device, max_length=getattr(info, "text_length", None))
    embedded, null = encoder.encode(prompts), encoder.encode([""])
    text, text_mask = embedded.tokens.cpu(), embedded.mask.cpu()
    null_parts = (null.tokens[0].cpu(), null.mask[0].cpu())
    pooled = {} if null.text_embeds is None else {"text_embeds": embedded.text_embeds.cpu(),
                                                  "null_text_embeds": null.text_embeds[0].cpu()}
    del encoder
    release(device)
    space = getattr(info, "vae", None) or info.tokenizer
    decoder = autoencoder or model_store.find_by_tag(space, hint=getattr(info, "vae_path", "") or None)
    return Validation(every=every, prompts=prompts, text=text, text_mask=text_mask, null=null_parts, kind=entry.writes,
                      pipeline=pipeline(entry), decoder=Path(decoder), steps=steps, seed=seed, device=device,
                      pooled=pooled)
