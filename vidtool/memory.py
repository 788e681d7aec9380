"""Memory planning for inference: pick encode/decode chunk and tile sizes, and generate's
sub-batches, that fit a budget, and retry once with smaller ones when the device runs out anyway.

The estimate is deliberately simple and conservative: a chunk's working memory is taken as
LIVE_COPIES activations (of the model's dtype: 4 bytes each in float32, 2 in bf16) of the widest layer (the most output channels of any convolution or
linear layer of the model) at full output resolution, over the frames the chunk computes (its kept
frames plus the context margins on both sides):

    bytes ≈ LIVE_COPIES · itemsize · B · (chunk + 2·margin) · tf · (tile · sf)² · widest

LIVE_COPIES = 4 counts a block's input, output, a normalisation temporary and the residual branch.
A denoiser's sub-batch is planned the same way: its weights stay resident, and each sample costs
LIVE_COPIES activations of the widest layer at every latent position (frames · h · w, or tokens),
twice under classifier-free guidance (the conditional and unconditional halves of one call):

    bytes ≈ weights + B · LIVE_COPIES · itemsize · copies · positions · widest

Underestimates are what the retry is for.
"""

from __future__ import annotations

import contextlib
import gc
import sys
from dataclasses import replace
from typing import Any, Callable, Iterator, TypeVar

import torch
from torch import nn

from vidtool.autoencoders.tiling import Tiling
from vidtool.budget import host_budget, parse_memory  # noqa: F401 (parse_memory: read from here too)
from vidtool.errors import UserError
from vidtool.precision import model_dtype

LIVE_COPIES = 4
MIN_TILE = 8  # latent pixels; below this the overlap blending costs more than it saves
T = TypeVar("T")


def device_budget(device: str | torch.device) -> int:
    """What a stage may use: 80% of the GPU's free memory, or half of the machine's available RAM."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * 0.8)
    return host_budget()


def widest(model: nn.Module) -> int:
    widths = [m.out_channels for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)]
    widths += [m.out_features for m in model.modules() if isinstance(m, nn.Linear)]
    return max(widths, default=1)


def chunk_bytes(model: Any, batch: int, tiling: Tiling, latent_height: int, latent_width: int) -> int:
    """The module docstring's estimate of one chunk's working memory."""
    tile_h = min(tiling.tile or latent_height, latent_height)
    tile_w = min(tiling.tile or latent_width, latent_width)
    frames = (tiling.chunk + 2 * tiling.margin) * model.temporal_factor
    pixels = tile_h * tile_w * model.spatial_factor**2
    return LIVE_COPIES * model_dtype(model).itemsize * batch * frames * pixels * widest(model)


def plan(model: Any, batch: int, latent_frames: int, latent_height: int, latent_width: int, budget: int, *,
         spatial: bool, start: Tiling = Tiling()) -> Tiling:
    """The largest tiling (chunk first, then tile) whose estimate fits `budget`; the smallest there
    is when none does. `spatial=False` (encoding) keeps whole frames."""
    tiling = replace(start, chunk=min(start.chunk, max(latent_frames, 1)))
    fits = lambda t: chunk_bytes(model, batch, t, latent_height, latent_width) <= budget
    while not fits(tiling) and tiling.chunk > 1:
        tiling = replace(tiling, chunk=max(1, tiling.chunk // 2))
    if spatial:
        side = max(latent_height, latent_width)
        while not fits(tiling) and (tiling.tile or side) // 2 >= MIN_TILE:
            tile = (tiling.tile or side) // 2
            tiling = replace(tiling, tile=tile, overlap=min(tiling.overlap, tile // 4))
    return tiling


def weight_bytes(model: nn.Module) -> int:
    """What a model holds on its device whatever the batch: its parameters and buffers."""
    return sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))


def sample_bytes(model: nn.Module, positions: int, copies: int = 2) -> int:
    """The module docstring's estimate of one sample's working memory in a denoiser."""
    return LIVE_COPIES * model_dtype(model).itemsize * copies * positions * widest(model)


def plan_batch(model: nn.Module, positions: int, budget: int, batch_size: int, copies: int = 2) -> int:
    """The largest sub-batch, at most `batch_size`, whose weights and samples fit `budget`; 1 when
    even one does not (the out-of-memory retry then has the last word)."""
    room = budget - weight_bytes(model)
    return max(1, min(batch_size, room // sample_bytes(model, positions, copies)))


def release(device: str | torch.device) -> None:
    """Return the memory of models just dropped before the next one takes its own: the garbage
    collector breaks their reference cycles, and CUDA's caching allocator hands the blocks back."""
    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()


@contextlib.contextmanager
def on_device(model: nn.Module, device: str | torch.device) -> Iterator[nn.Module]:
    """`model` on `device` for the block and back on the host after it, so the next model of a
    pipeline has the device to itself (generate: a content encoder before the denoiser)."""
    model.to(device)
    try:
        yield model
    finally:
        model.to("cpu")
        release(device)


def smaller(tiling: Tiling, latent_height: int, latent_width: int, spatial: bool) -> Tiling:
    """Half the chunk, and half the tile when spatial tiling is allowed and the chunk is already 1."""
    if tiling.chunk > 1:
        return replace(tiling, chunk=tiling.chunk // 2)
    side = max(latent_height, latent_width)
    if spatial and (tiling.tile or side) // 2 >= MIN_TILE:
        tile = (tiling.tile or side) // 2
        return replace(tiling, tile=tile, overlap=min(tiling.overlap, tile // 4))
    return replace(tiling, margin=tiling.margin // 2)  # the last lever: less temporal context


def is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, torch.OutOfMemoryError):
        return True
    # The CPU allocator raises a plain RuntimeError.
    return isinstance(error, RuntimeError) and "can't allocate memory" in str(error)


def with_retry(run: Callable[[Tiling], T], tiling: Tiling, latent_height: int, latent_width: int, *, spatial: bool,
               what: str, log: Callable[[str], None] = lambda m: print(m, file=sys.stderr)) -> T:
    """`run(tiling)`; on out-of-memory, say so and run once more with `smaller(tiling)`."""
    try:
        return run(tiling)
    except Exception as error:
        if not is_out_of_memory(error):
            raise
    retry = smaller(tiling, latent_height, latent_width, spatial)
    log(f"vidtool {what}: out of memory with chunk {tiling.chunk}, tile {tiling.tile or 'whole frames'}; "
        f"retrying once with chunk {retry.chunk}, tile {retry.tile or 'whole frames'}, margin {retry.margin}")
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    try:
        return run(retry)
    except Exception as error:
        if not is_out_of_memory(error):
            raise
        raise UserError(f"out of memory in {what} even with chunk {retry.chunk}, tile {retry.tile or 'whole frames'}; "
                        "pass a smaller --max-memory (or --chunk/--tile), or use a larger device") from error


def retry_in_halves(run: Callable[[list[int]], T], items: list[int], *, what: str,
                    log: Callable[[str], None] = lambda m: print(m, file=sys.stderr)) -> list[T]:
    """`[run(items)]`; on out-of-memory, say so and run the two halves one after the other instead
    (for samplers whose item i does not depend on the batch it is in)."""
    try:
        return [run(items)]
    except Exception as error:
        if not is_out_of_memory(error) or len(items) < 2:
            if is_out_of_memory(error):
                raise UserError(f"out of memory in {what} with a batch of 1; use a larger device") from error
            raise
    half = len(items) // 2
    log(f"vidtool {what}: out of memory with a batch of {len(items)}; retrying once as two batches of "
        f"{half} and {len(items) - half}")
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    try:
        return [run(items[:half]), run(items[half:])]
    except Exception as error:
        if not is_out_of_memory(error):
            raise
        raise UserError(f"out of memory in {what} even with a batch of {len(items) - half}; "
                        "pass a smaller --batch-size, or use a larger device") from error
