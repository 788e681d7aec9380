"""MotionAura (paper §3-4): text-to-video as masked discrete diffusion over 3D-MBQ-VAE token ids
with the spectral transformer, and sketch-guided inpainting with its LoRA-adapted copy.

    tokens = generate(model, text, mask, null_text, null_mask)          # all <MASK> → token ids
    result = inpaint(adapter, tokenizer, InpaintRequest(...), encoder)  # only the region is new

The sampler is `vidtool.diffusion.masked.sample` (MaskGIT-style unmasking by confidence); this
module builds its logits function: classifier-free guidance on the log-probabilities, and for
inpainting the masked video's tokens and the sketch as extra context. A network cast to bf16/fp16
runs under autocast; the guidance and the sampler work on float32 log-probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from einops import rearrange

from vidtool.diffusion.masked import sample
from vidtool.errors import UserError
from vidtool.pipelines.outputs import TokensOutput
from vidtool.precision import autocast_like, model_dtype


def generate(model, text: torch.Tensor, text_mask: torch.Tensor, null_text: torch.Tensor, null_mask: torch.Tensor,
             *, frames: int | None = None, size: tuple[int, int] | None = None, steps: int | None = None,
             cfg: float | None = None, temperature: float | None = None, fps: float | None = None,
             generator: list[torch.Generator] | None = None,
             progress: Callable[[int], None] | None = None) -> TokensOutput:
    """Text embeddings [B, L, D] → token ids [B, T, h, w], starting from z_T (all <MASK>).

    `frames` counts video frames (a multiple of the tokenizer's temporal factor); `size` is the token
    grid (h, w) (default: the training grid; RoPE, or the sinusoidal ablation, is computed for any
    grid); unset options take
    the model's config (Table 12: 10 steps)."""
    c = model.config
    frames = frames or c.token_frames * c.temporal_factor
    if frames % c.temporal_factor:
        lower = max(c.temporal_factor, frames // c.temporal_factor * c.temporal_factor)
        raise UserError(f"--frames {frames} is not a multiple of the tokenizer's temporal factor {c.temporal_factor}; "
                        f"try {lower} or {lower + c.temporal_factor}")
    shape = (text.shape[0], frames // c.temporal_factor, *(size or (c.token_height, c.token_width)))
    tokens = torch.full(shape, model.mask_id, dtype=torch.long, device=text.device)
    filled = fill(model, tokens, text, text_mask, null_text, null_mask, steps=steps, cfg=cfg, temperature=temperature,
                  fps=fps, generator=generator, progress=progress)
    return TokensOutput(filled, float(fps or c.fps), frames)


def fill(model, tokens: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor, null_text: torch.Tensor,
         null_mask: torch.Tensor, *, steps: int | None = None, cfg: float | None = None,
         temperature: float | None = None, fps: float | None = None, generator: list[torch.Generator] | None = None,
         progress: Callable[[int], None] | None = None, logits_of: Callable | None = None) -> torch.Tensor:
    """Sample the <MASK> places of tokens [B, T, h, w] with classifier-free guidance on the logits;
    `logits_of(tokens, t, fps, text, text_mask)` replaces the model's plain forward (inpainting adds
    context). Places holding a real id are never changed."""
    c = model.config
    b, t, h, w = tokens.shape
    cfg = c.cfg if cfg is None else cfg
    fps_value = torch.full((b,), float(fps or c.fps), device=tokens.device)
    logits_of = logits_of or model
    text = text.to(model_dtype(model))
    null_text = null_text.to(text).expand(b, -1, -1)
    null_mask = null_mask.to(text_mask.device).expand(b, -1)

    def guided(flat: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        grid = rearrange(flat, "b (t h w) -> b t h w", t=t, h=h)
        if cfg == 1.0:
            with autocast_like(model):
                return logits_of(grid, times, fps_value, text, text_mask).float()
        with autocast_like(model):
            both = logits_of(torch.cat([grid, grid]), times.repeat(2), fps_value.repeat(2),
                             torch.cat([text, null_text]), torch.cat([text_mask, null_mask]))
        conditional, unconditional = both.float().log_softmax(-1).chunk(2)
        return unconditional + cfg * (conditional - unconditional)

    with torch.inference_mode():
        flat = sample(guided, rearrange(tokens, "b t h w -> b (t h w)"), model.mask_id,
                      steps=steps or c.sample_steps, schedule=model.schedule,
                      temperature=c.temperature if temperature is None else temperature,
                      choice_temperature=c.choice_temperature, generators=generator, progress=progress)
    return rearrange(flat, "b (t h w) -> b t h w", t=t, h=h)


def fill_region(adapter, tokens: torch.Tensor, masked_tokens: torch.Tensor, region: torch.Tensor,
                sketch: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor, null_text: torch.Tensor,
                null_mask: torch.Tensor, **options) -> torch.Tensor:
    """§4: resample the tokens of `region` [B, T, h, w] (bool) with the spectral-inpaint `adapter`,
    which sees the masked video's tokens and the sketch as context; every other token is returned
    unchanged. `options` are `fill`'s."""
    from vidtool.generators.spectral_transformer import Segment

    start = tokens.long().masked_fill(region.bool(), adapter.base.mask_id)
    context = masked_tokens.long()
    with autocast_like(adapter):
        sketch_segment = adapter.sketch_tokens(sketch.to(model_dtype(adapter)))

    def logits_of(grid, times, fps_value, text_, mask_):
        copies = grid.shape[0] // context.shape[0]  # 2 under classifier-free guidance
        segment = Segment(sketch_segment.embeddings.repeat(copies, 1, 1), sketch_segment.positions)
        return adapter.logits(grid, times, fps_value, text_, mask_, context.repeat(copies, 1, 1, 1), segment)

    return fill(adapter.base, start, text, text_mask, null_text, null_mask, logits_of=logits_of, **options)


@dataclass
class InpaintRequest:
    frames: np.ndarray  # uint8 [T, H, W, 3]
    mask: np.ndarray  # bool [T, H, W], True where to paint
    strokes: np.ndarray  # [h, w] nonzero on the sketch's strokes
    prompt: str


@dataclass
class InpaintResult:
    frames: np.ndarray  # uint8 [T, H, W, 3]: the input outside the mask, the decoded tokens inside
    decoded: np.ndarray  # uint8 [T, H, W, 3]: the decoded tokens everywhere (the tokenizer's view)


def inpaint(adapter, tokenizer, request: InpaintRequest, text_encoder, *, steps: int | None = None,
            cfg: float | None = None, temperature: float | None = None, seed: int = 0, device: str = "cpu",
            progress: Callable[[int], None] | None = None) -> InpaintResult:
    """Sketch-guided inpainting end to end: pixels → tokens → `fill_region` → pixels, composited into
    the input. Only the region is new: the tokens outside it are kept as given, and after decoding the
    pixels outside the user's mask are the input's own bytes, so the context is exactly preserved and
    the tokenizer's reconstruction error shows only inside the hole."""
    from vidtool.autoencoders.apply import decode_frames, encode_frames, fit_length, fit_size
    from vidtool.autoencoders.tiling import default_tiling
    from vidtool.data.tokens import sketch_image, token_region

    frames, mask = request.frames, request.mask
    if frames.shape[:3] != mask.shape:
        raise UserError(f"the mask is {mask.shape} (T, H, W) and the video {frames.shape[:3]}; they must match")
    # Padded up to the tokenizer's factors (last frame, row and column repeated), cut back after decoding.
    padded, length = fit_length(frames[None], tokenizer.temporal_factor, tokenizer.family)
    padded, (height, width) = fit_size(padded, tokenizer.spatial_factor)
    padded_mask, _ = fit_size(fit_length(mask[None], tokenizer.temporal_factor, tokenizer.family)[0],
                              tokenizer.spatial_factor)
    holed = np.where(padded_mask[..., None], 0, padded).astype(np.uint8)  # V ⊙ (1 − m)
    tiling = default_tiling(tokenizer)
    with torch.inference_mode():
        tokens = encode_frames(tokenizer, padded, tiling, device).tokens.to(device)
        masked_tokens = encode_frames(tokenizer, holed, tiling, device).tokens.to(device)
        region = token_region(torch.from_numpy(padded_mask), tokenizer.temporal_factor, tokenizer.spatial_factor)
        sketch = torch.from_numpy(sketch_image(request.strokes)).float()[None, None].to(device)
        text, null = text_encoder.encode([request.prompt]), text_encoder.encode([""])
        filled = fill_region(adapter, tokens, masked_tokens, region.to(device), sketch, text.tokens.to(device),
                             text.mask.to(device), null.tokens[0].to(device), null.mask[0].to(device), steps=steps,
                             cfg=cfg, temperature=temperature, generator=[torch.Generator().manual_seed(seed)],
                             progress=progress)
        latents = tokenizer.indices_to_latents(filled)
        decoded = np.concatenate(list(decode_frames(tokenizer, latents, tiling, device)), axis=1)[0, :length,
                                                                                                  :height, :width]
    return InpaintResult(frames=np.where(mask[..., None], decoded, frames).astype(np.uint8), decoded=decoded)
