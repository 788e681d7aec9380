"""Token sets for MotionAura's spectral transformer: clips tokenized once by a frozen 3D-MBQ-VAE,
captions encoded once, kept in one tensor file (kind `dataset-shard`), like the latent sets.

Layout: "tokens" int16 [N, t, h, w] (int32 for codebooks past int16's 32,768 ids), "fps" float [N],
"text" float16 [N, L, D], "text_mask" bool [N, L], "null_text" [1, L, D], "null_mask" [1, L]. With
`inpainting=True` (records carrying a `mask` file, as `make-dataset` and `curate-sketch-dataset`
write) also the inputs of §4:
"masked_tokens" (tokens of V ⊙ (1 − m)), "region" bool [N, t, h, w] (the tokens whose footprint
touches the region to fill) and "sketch" uint8 [N, S, S] (the object's sketch, 1 on strokes).

The region is the object's box, grown by `margin` pixels, in every frame: the hole then says where
to paint but not what, so the shape has to come from the sketch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from vidtool.errors import UserError

SKETCH_SIZE = 32


@dataclass
class TokenSetInfo:
    tokenizer: str  # "family@digest"
    codebook_size: int
    grid: tuple[int, int, int]  # token (t, h, w) per clip
    temporal_factor: int
    fps: float
    text_dim: int
    text_encoder: str
    inpainting: bool
    text_length: int | None = None  # text tokens per caption (read from the set's text tensor)


def box_region(masks: np.ndarray, margin: int) -> np.ndarray:
    """[T, H, W] object masks → [T, H, W] bool: per frame, the object's bounding box grown by `margin`."""
    region = np.zeros(masks.shape, dtype=bool)
    h, w = masks.shape[1:]
    for i, frame in enumerate(masks):
        rows, cols = np.nonzero(frame)
        if len(rows):
            region[i, max(rows.min() - margin, 0): rows.max() + margin + 1,
                   max(cols.min() - margin, 0): cols.max() + margin + 1] = True
    return region


def token_region(region: torch.Tensor, temporal_factor: int, spatial_factor: int) -> torch.Tensor:
    """Pixel region [B, T, H, W] bool → token region [B, t, h, w]: a token whose footprint touches it."""
    pooled = F.max_pool3d(region[:, None].float(), kernel_size=(temporal_factor, spatial_factor, spatial_factor))
    return pooled[:, 0] > 0


def sketch_image(strokes: np.ndarray, size: int = SKETCH_SIZE) -> np.ndarray:
    """A stroke image [H, W] (nonzero on strokes) → uint8 [size, size]: cropped to its strokes, padded
    to a square and resized, so the sketch says what to draw, not where (the region says where)."""
    rows, cols = np.nonzero(strokes)
    if not len(rows):
        raise UserError("the sketch is empty (no stroke pixels); draw the object's outline")
    crop = strokes[rows.min(): rows.max() + 1, cols.min(): cols.max() + 1] > 0
    side = max(crop.shape) + 2
    square = np.zeros((side, side), dtype=np.float32)
    top, left = (side - crop.shape[0]) // 2, (side - crop.shape[1]) // 2
    square[top: top + crop.shape[0], left: left + crop.shape[1]] = crop
    resized = F.interpolate(torch.from_numpy(square)[None, None], size=(size, size), mode="area")[0, 0]
    return (resized > 0.1).to(torch.uint8).numpy()


def npz_array(path: Path, key: str, *, rank: int, what: str) -> np.ndarray:
    """Array `key` of an .npz file: numbers or booleans of the given rank with no empty axis. Never
    unpickles (allow_pickle=False: an object array in a downloaded file could run code)."""
    import struct
    import zipfile
    import zlib

    try:
        with np.load(path, allow_pickle=False) as data:
            if key not in data:
                raise UserError(f"{path} holds no '{key}' array; it needs {what}")
            array = data[key]
    # Not an npz, truncated, object arrays, a mangled zip directory (zipfile raises all of these; a
    # member whose header names an unknown compression method is zipfile's NotImplementedError).
    except (OSError, ValueError, EOFError, KeyError, NotImplementedError, struct.error, zipfile.BadZipFile,
            zlib.error) as e:
        reason = (str(e).splitlines() or [type(e).__name__])[0][:120]
        raise UserError(f"cannot read {path} as an .npz with '{key}' {what}: {reason}") from e
    if array.dtype.kind not in "biuf" or array.ndim != rank or 0 in array.shape:
        raise UserError(f"{path}: '{key}' is {array.dtype} {list(array.shape)}; it must hold {what} of numbers")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise UserError(f"{path}: '{key}' holds NaN or infinite values")
    return array


def read_sketch(path: Path) -> np.ndarray:
    """A sketch file → stroke image [H, W]: an `.npz` with a per-frame 'sketch' (its first frame), or an
    image whose strokes differ from its border colour (dark on white or light on black)."""
    if path.suffix == ".npz":
        return npz_array(path, "sketch", rank=3, what="per-frame sketches [T, H, W]")[0]
    from PIL import Image

    try:
        gray = np.asarray(Image.open(path).convert("L"), dtype=np.float32)
    except OSError as e:
        raise UserError(f"cannot read the sketch image {path}: {e}") from e
    border = np.median(np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]]))
    return np.abs(gray - border) > 64


def read_masks(path: Path, frames: int, size: tuple[int, int]) -> np.ndarray:
    """A mask file → bool [frames, H, W]: an `.npz` with 'mask' [T, H, W]; first frames kept, last one held."""
    masks = npz_array(path, "mask", rank=3, what="masks [T, H, W]") > 0
    if masks.shape[1:] != size:
        masks = _fit(masks, size)
    if len(masks) < frames:
        masks = np.concatenate([masks, np.repeat(masks[-1:], frames - len(masks), axis=0)])
    return masks[:frames]


def _fit(masks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Masks at the video's native size → the clip's `size`, as `read_video` fits frames: scaled
    (nearest) to cover the target with the aspect kept, then a centre crop."""
    h, w = masks.shape[1:]
    scale = max(size[0] / h, size[1] / w)
    scaled = F.interpolate(torch.from_numpy(masks).float()[:, None], size=(round(h * scale), round(w * scale)),
                           mode="nearest")[:, 0].numpy() > 0.5
    top, left = (scaled.shape[1] - size[0]) // 2, (scaled.shape[2] - size[1]) // 2
    if top < 0 or left < 0:
        raise UserError(f"masks of {h}×{w} do not cover clips of {size[0]}×{size[1]}")
    return scaled[:, top: top + size[0], left: left + size[1]]


def build_token_set(manifests: list[Path], tokenizer_folder: Path, out_file: Path, *, frames: int = 16,
                    size: int = 64, fps: float | None = None, text_encoder_path: Path | None = None,
                    inpainting: bool = False, margin: int = 4, batch_size: int = 16, device: str = "cpu",
                    progress: Callable[[int], None] | None = None) -> Path:
    from vidtool.autoencoders.apply import encode_frames
    from vidtool.autoencoders.tiling import default_tiling
    from vidtool.checkpoint import from_pretrained, model_tag
    from vidtool.data.latents import build_settings, encode_clip_set
    from vidtool.data.manifest import resolve
    from vidtool.tensorfile import TensorFile, save

    tokenizer = from_pretrained(tokenizer_folder, device=device).eval()
    if not hasattr(tokenizer, "tokenize"):
        raise UserError(f"{tokenizer_folder} holds a {tokenizer.family} model, not a tokenizer; pass an mbq-vae folder")
    if frames % tokenizer.temporal_factor or size % tokenizer.spatial_factor:
        raise UserError(f"--frames {frames} and --size {size} must be multiples of the tokenizer's factors "
                        f"{tokenizer.temporal_factor} and {tokenizer.spatial_factor}")

    # int16 halves the set's size, but holds ids only below 32,768; a 2^16 LFQ codebook needs int32.
    id_dtype = torch.int16 if tokenizer.codebook_size <= 2**15 else torch.int32

    def tokens_of(video: np.ndarray) -> torch.Tensor:
        return encode_frames(tokenizer, video, default_tiling(tokenizer), device).tokens.to(id_dtype)

    def encode(items: list[dict], video: np.ndarray) -> dict[str, torch.Tensor]:
        fps_values = torch.tensor([float(fps or item["source"][1].get("fps") or 8.0) for item in items])
        out = {"tokens": tokens_of(video), "fps": fps_values}
        if not inpainting:
            return out
        regions, sketches = [], []
        for item in items:
            manifest, record = item["source"]
            if "mask" not in record:
                raise UserError(f"{manifest}: record {record.get('path')} has no 'mask' file; inpainting needs "
                                "object masks (make-dataset and curate-sketch-dataset write them)")
            masks = read_masks(resolve(manifest, record["mask"]), frames, video.shape[2:4])
            regions.append(box_region(masks, margin))
            strokes = read_sketch(resolve(manifest, record.get("sketch", record["mask"])))
            sketches.append(sketch_image(strokes))
        region = torch.from_numpy(np.stack(regions))
        masked_video = np.where(region.numpy()[..., None], 0, video).astype(np.uint8)  # V ⊙ (1 − m)
        return {**out, "masked_tokens": tokens_of(masked_video),
                "region": token_region(region, tokenizer.temporal_factor, tokenizer.spatial_factor),
                "sketch": torch.from_numpy(np.stack(sketches))}

    settings = build_settings("tokens", manifests, tokenizer_folder, frames=frames, size=size, fps=fps,
                              text_encoder_path=text_encoder_path, batch_size=batch_size, inpainting=inpainting,
                              margin=margin, **({"ids": "int32"} if id_dtype == torch.int32 else {}))
    # (int32 ids are in the settings so batches kept by a build that stored them as int16, wrapped
    # past 32,767, are discarded rather than resumed; int16 sets keep their old settings digest.)
    encoded = encode_clip_set(manifests, encode, frames=frames, size=size, fps=fps,
                              text_encoder_path=text_encoder_path, batch_size=batch_size, device=device,
                              progress=progress, out_file=out_file, settings=settings)
    tokens = encoded.tensors["tokens"]
    info = TokenSetInfo(tokenizer=model_tag(tokenizer_folder), codebook_size=tokenizer.codebook_size,
                        grid=tuple(tokens.shape[1:]), temporal_factor=tokenizer.temporal_factor,
                        fps=float(encoded.tensors["fps"].median()), text_dim=encoded.tensors["text"].shape[-1],
                        text_encoder=encoded.text_encoder, inpainting=inpainting)
    tf = TensorFile(kind="dataset-shard", tensors=encoded.tensors, model=info.tokenizer, params=info.__dict__)
    tf.set_prompts(encoded.prompts)
    tf.extra["model_path"] = str(Path(tokenizer_folder).resolve())
    save(tf, out_file)
    encoded.kept.finish()
    return out_file


class TokenDataset(torch.utils.data.Dataset):
    """Items: dict(tokens long [t, h, w], fps, text, text_mask, null_text, null_mask, prompt) and, in an
    inpainting set, masked_tokens, region and sketch (float [1, S, S] in {0, 1})."""

    REQUIRED = {"tokens", "fps"}
    INPAINTING = {"masked_tokens", "region", "sketch"}

    def __init__(self, path: str | Path, *, inpainting: bool = False):
        from vidtool.data.latents import load_set

        tf = load_set(path, self.REQUIRED | (self.INPAINTING if inpainting else set()),
                      "an inpainting token set" if inpainting else "a token set",
                      f"`vidtool train-denoiser --family spectral{'-inpaint' if inpainting else ''} --data MANIFEST` "
                      "(inpainting needs clips with object masks)")
        params = dict(tf.params)
        params["grid"] = tuple(params["grid"])
        self.path = Path(path)
        self.info = TokenSetInfo(**params)
        self.info.text_length = int(tf["text"].shape[1])
        self.tokenizer_path = tf.extra.get("model_path")
        self.tensors = tf.tensors
        self.inpainting = inpainting
        self.prompts = tf.prompts()
        for name in ("tokens", "masked_tokens") if inpainting else ("tokens",):
            ids = self.tensors[name]
            if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.info.codebook_size):
                raise UserError(f"{path}: '{name}' holds ids from {int(ids.min())} to {int(ids.max())}, outside the "
                                f"codebook of {self.info.codebook_size}; delete it and build the token set again")

    def __len__(self) -> int:
        return self.tensors["tokens"].shape[0]

    def __getitem__(self, index: int) -> dict:
        t = self.tensors
        item = {"tokens": t["tokens"][index].long(), "fps": t["fps"][index].float(), "text": t["text"][index].float(),
                "text_mask": t["text_mask"][index], "null_text": t["null_text"][0].float(),
                "null_mask": t["null_mask"][0], "prompt": self.prompts[index]}
        if self.inpainting:
            item.update(masked_tokens=t["masked_tokens"][index].long(), region=t["region"][index],
                        sketch=rearrange(t["sketch"][index].float(), "h w -> 1 h w"))
        return item


def read_mask(path: Path, frames: int, size: tuple[int, int]) -> np.ndarray:
    """A mask file → bool [frames, H, W]: an .npz with 'mask' [T, H, W], a 'mask' tensor file, or one
    image (nonzero = paint) used for every frame. Resized (nearest) to the video's frame size."""
    suffix = path.suffix.lower()
    if not path.is_file():
        raise UserError(f"no such mask file: {path}")
    if suffix == ".npz":
        masks = read_masks(path, frames, npz_array(path, "mask", rank=3, what="masks [T, H, W]").shape[1:])
    elif suffix == ".safetensors":
        from vidtool import tensorfile

        masks = tensorfile.load(path, kinds=["mask"]).main[0].numpy() > 0
    else:
        from PIL import Image

        try:
            image = np.asarray(Image.open(path).convert("L")) > 127
        except OSError as e:
            raise UserError(f"cannot read the mask image {path}: {e}") from e
        masks = np.repeat(image[None], frames, axis=0)
    if len(masks) < frames:
        masks = np.concatenate([masks, np.repeat(masks[-1:], frames - len(masks), axis=0)])
    masks = torch.from_numpy(np.ascontiguousarray(masks[:frames])).float()[:, None]
    masks = F.interpolate(masks, size=size, mode="nearest")[:, 0] > 0.5
    if not masks.any():
        raise UserError(f"the mask {path} is empty: mark the region to paint with nonzero pixels")
    return masks.numpy()
