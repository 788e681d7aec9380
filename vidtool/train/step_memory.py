"""The memory one training step of a model needs, measured without the memory: the model is built on
the `meta` device (tensors with shapes and dtypes but no storage), `training_losses` runs on meta
inputs, and every tensor autograd saves for the backward pass is recorded by a
`torch.autograd.graph.saved_tensors_hooks` pack hook, deduplicated by storage.

    step memory = model state + saved activations
    model state = 4 B x every parameter (the fp32 master weights, frozen ones included)
                + (4 + 8 [+ 4]) B x every trainable parameter (fp32 gradient, AdamW's two fp32
                  moments, the fp32 EMA when the trainer keeps one)

Mixed precision is the trainer's (vidtool.train.loop): fp32 parameters under bf16 autocast. Autocast
does not run on meta tensors, so `MetaAutocast` stands in for CUDA's: the matrix products and
convolutions cast their inputs to bf16 (a trainable weight once per step, as autocast's cache does;
a frozen one at every use), and the ops CUDA autocast keeps in fp32 (norms, softmax, losses,
exp/log/pow, interpolation) cast theirs to fp32. 4-D `scaled_dot_product_attention` is routed to the
memory-efficient kernel CUDA picks (it saves q, k, v, the output and a log-sum-exp, not the
attention matrix); other shapes keep the math path, which CUDA falls back to as well.

Activation checkpointing (`vidtool.train.parallel.checkpoint_activations`) keeps only each block's
inputs and recomputes the block in the backward pass, one block at a time. The forward pass is
therefore measured once, with every saved tensor attributed to the block it was saved in (or to
none), and the checkpointed figure is

    saved outside any block + the blocks' inputs + the largest block's own saved tensors

Not counted: the gradients of activations and temporaries of a single op that live during the
backward pass (about one block's largest output), the CUDA context and allocator fragmentation.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_map

from vidtool.train import parallel

GB = 1e9
MASTER, GRADIENT, ADAMW, EMA = 4, 4, 8, 4  # bytes per parameter, all fp32

# CUDA autocast's lists (aten/src/ATen/autocast_mode.cpp), at the level of the Python calls.
_LOWER = {F.linear, F.conv1d, F.conv2d, F.conv3d, F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d,
          F.prelu, torch.matmul, torch.mm, torch.bmm, torch.baddbmm, torch.addmm, torch.addbmm, torch.mv,
          torch.einsum, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.Tensor.__rmatmul__, torch.Tensor.mm,
          torch.Tensor.bmm, torch.Tensor.baddbmm, torch.Tensor.addmm, F.scaled_dot_product_attention}
_FP32 = {F.softmax, F.log_softmax, torch.softmax, torch.log_softmax, torch.Tensor.softmax, torch.Tensor.log_softmax,
         F.layer_norm, F.group_norm, F.mse_loss, F.l1_loss, F.smooth_l1_loss, F.cross_entropy, F.nll_loss,
         F.binary_cross_entropy_with_logits, F.kl_div, F.softplus, F.interpolate, F.cosine_similarity,
         torch.exp, torch.Tensor.exp, torch.log, torch.Tensor.log, torch.pow, torch.Tensor.pow, torch.Tensor.__pow__,
         torch.rsqrt, torch.Tensor.rsqrt, torch.reciprocal, torch.Tensor.reciprocal, torch.logsumexp,
         torch.Tensor.logsumexp, torch.cumsum, torch.Tensor.cumsum, torch.norm, torch.Tensor.norm,
         torch.linalg.vector_norm, torch.cdist, F.normalize}
_SDPA = F.scaled_dot_product_attention


class MetaAutocast(TorchFunctionMode):
    """CUDA's bf16 autocast for meta tensors (see the module docstring)."""

    def __init__(self, dtype: torch.dtype = torch.bfloat16):
        super().__init__()
        self.dtype = dtype
        self._weights: dict[int, torch.Tensor] = {}  # autocast's cache: a trainable weight is cast once
        self.weight_copies: set[int] = set()  # storages of cast weights (FSDP keeps none of them)

    def _lower(self, x: Any) -> Any:
        if not (isinstance(x, torch.Tensor) and x.is_floating_point() and x.dtype != self.dtype):
            return x
        if isinstance(x, nn.Parameter):
            cached = self._weights.get(id(x)) if x.requires_grad else None
            if cached is None:
                cached = x.to(self.dtype)
                self.weight_copies.add(_storage_key(cached))
                if x.requires_grad:
                    self._weights[id(x)] = cached
            return cached
        return x.to(self.dtype)

    @staticmethod
    def _fp32(x: Any) -> Any:
        if isinstance(x, torch.Tensor) and x.dtype in (torch.bfloat16, torch.float16):
            return x.float()
        return x

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _LOWER:
            args, kwargs = tree_map(self._lower, (args, kwargs))
            if func is F.scaled_dot_product_attention:
                return _efficient_attention(*args, **kwargs)
        elif func is F.multi_head_attention_forward:
            # A composite whose inner calls this mode does not see (it is off inside its own
            # handler): its projections and attention all take bf16 inputs, as autocast casts them.
            args, kwargs = tree_map(self._lower, (args, kwargs))
            F.scaled_dot_product_attention = _efficient_attention
            try:
                return func(*args, **kwargs)
            finally:
                F.scaled_dot_product_attention = _SDPA
        elif func in _FP32:
            args, kwargs = tree_map(self._fp32, (args, kwargs))
        return func(*args, **kwargs)


def _efficient_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                         enable_gqa=False) -> torch.Tensor:
    """What CUDA runs for 4-D bf16 attention: the memory-efficient kernel (flash saves the same)."""
    if query.dim() != 4 or query.device.type != "meta" or enable_gqa:
        return _SDPA(query, key, value, attn_mask, dropout_p, is_causal, scale=scale,
                                              enable_gqa=enable_gqa)
    bias = None
    if attn_mask is not None:
        bias = attn_mask.to(query.dtype)  # a boolean mask becomes an additive bias of the same shape
        shape = (query.shape[0], query.shape[1], query.shape[2], key.shape[2])
        bias = bias.expand(torch.broadcast_shapes(bias.shape, shape))
    out = torch.ops.aten._scaled_dot_product_efficient_attention(
        query, key, value, bias, query.requires_grad or key.requires_grad or value.requires_grad,
        dropout_p, is_causal, scale=scale)
    return out[0]


def _storage_key(t: torch.Tensor) -> int:
    return t.untyped_storage()._cdata


@dataclass
class _Saved:
    nbytes: int
    block: int | None  # index into the checkpointed blocks, or None: saved outside every block
    tensor: torch.Tensor  # kept alive, so that a storage's key is not reused during the pass


@dataclass
class StepMemory:
    """Bytes of one training step; `*_gb` in decimal gigabytes (1e9 bytes)."""

    parameters: int
    trainable: int
    blocks: int  # blocks `checkpoint_activations` wraps
    activations: int  # saved for backward without checkpointing (the batch included)
    checkpointed: int  # with checkpointing
    weight_copies: int  # of `activations`: bf16 copies of weights that autocast saves
    weight_copies_checkpointed: int  # of `checkpointed`
    largest_block_parameters: int
    root_parameters: int  # in `model` but in no block: FSDP's root unit
    unsharded: int  # parameters FSDP does not see (`frozen` ones outside the model's tree)
    compute_bytes: int = 2  # per weight as the blocks compute (bf16; 4 in fp32 training)
    ema: bool = True
    per_block: list[int] = field(default_factory=list, repr=False)  # each block's own saved bytes

    @property
    def state(self) -> int:
        """fp32 master weights of every parameter; gradient, AdamW moments (and EMA) of trainable ones."""
        return MASTER * self.parameters + (GRADIENT + ADAMW + (EMA if self.ema else 0)) * self.trainable

    def total(self, checkpointing: bool) -> int:
        return self.state + (self.checkpointed if checkpointing else self.activations)

    def fsdp_per_gpu(self, ranks: int) -> int:
        """Per rank under FSDP (vidtool.train.parallel.shard) with `ranks` ranks and checkpointing:
        the state sharded, except the fp32 weights of parameters outside the model's tree; the
        activations, less autocast's weight copies (FSDP's bf16 policy computes in gathered bf16
        weights instead); and those gathered weights: the root unit's, and two blocks' (the one
        computing and the one prefetched)."""
        sharded = self.state - MASTER * self.unsharded
        activations = self.checkpointed - self.weight_copies_checkpointed
        gathered = self.compute_bytes * (self.root_parameters + 2 * self.largest_block_parameters)
        return sharded // ranks + MASTER * self.unsharded + activations + gathered


def measure_step(model: nn.Module, batch: dict[str, Any], *, step: int = 0, total_steps: int = 1, ema: bool = True,
                 dtype: torch.dtype | None = torch.bfloat16, frozen: nn.Module | None = None) -> StepMemory:
    """Run `model.training_losses(batch, ...)` once on meta tensors and measure it.

    `model` is in train mode on the meta device with fp32 parameters; `batch` holds meta tensors
    (CPU tensors are allowed for small metadata). `dtype` None measures fp32 training. `frozen`: a
    module the model uses but does not list among its parameters (a base model held outside its
    module tree); its parameters count in the state. Parameters and buffers saved as they are cost
    nothing more: only copies (autocast's) count as activations."""
    blocks = parallel.blocks(model, frozen=True)  # the trainer's checkpointing units
    saved: dict[int, _Saved] = {}
    block_inputs: dict[int, torch.Tensor] = {}
    current: list[int] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        try:
            key, nbytes = _storage_key(t), t.untyped_storage().nbytes()
        except (RuntimeError, NotImplementedError):  # a tensor without a plain storage
            return t
        block = current[0] if current else None
        if key not in saved:
            saved[key] = _Saved(nbytes, block, t)
        elif block is None:  # also saved outside every block: kept with checkpointing too
            saved[key].block = None
        return t

    with _marking(blocks, current, block_inputs), contextlib.ExitStack() as stack:
        autocast = stack.enter_context(MetaAutocast(dtype)) if dtype is not None else None
        stack.enter_context(torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t))
        terms = model.training_losses(batch, step=step, total_steps=total_steps)
    if not terms["loss"].requires_grad:
        raise ValueError(f"{type(model).__name__}'s loss does not require grad: nothing to train")

    held = [*model.parameters(), *model.buffers(), *(frozen.parameters() if frozen else ()),
            *(frozen.buffers() if frozen else ())]
    own = {_storage_key(t) for t in held if t.device.type == "meta"}
    saved = {key: s for key, s in saved.items() if key not in own}
    inputs = {_storage_key(t): t.untyped_storage().nbytes() for t in _tensors(batch) if t.device.type == "meta"}
    copies = autocast.weight_copies if autocast else set()
    everything = {key: s.nbytes for key, s in saved.items()} | inputs
    outside = {key: s.nbytes for key, s in saved.items() if s.block is None} | inputs
    kept = outside | {key: t.untyped_storage().nbytes() for key, t in block_inputs.items()
                      if key not in outside and key not in own}
    per_block = [0] * len(blocks)
    per_block_copies = [0] * len(blocks)
    for key, s in saved.items():
        if s.block is not None and key not in kept:
            per_block[s.block] += s.nbytes
            per_block_copies[s.block] += s.nbytes if key in copies else 0
    largest = max(range(len(blocks)), key=per_block.__getitem__, default=None)
    parameters = {id(p): p for p in held if isinstance(p, nn.Parameter)}  # `frozen` may share some
    in_model = {id(p) for p in model.parameters()}
    in_blocks = {id(p) for b in blocks for p in b.parameters()}
    return StepMemory(
        parameters=sum(p.numel() for p in parameters.values()),
        trainable=sum(p.numel() for p in parameters.values() if p.requires_grad),
        blocks=len(blocks),
        activations=sum(everything.values()),
        checkpointed=sum(kept.values()) + (per_block[largest] if largest is not None else 0),
        weight_copies=sum(n for key, n in everything.items() if key in copies),
        weight_copies_checkpointed=(sum(n for key, n in kept.items() if key in copies)
                                    + (per_block_copies[largest] if largest is not None else 0)),
        largest_block_parameters=max((sum(p.numel() for p in b.parameters()) for b in blocks), default=0),
        root_parameters=sum(p.numel() for p in model.parameters() if id(p) not in in_blocks),
        unsharded=sum(p.numel() for i, p in parameters.items() if i not in in_model),
        compute_bytes=torch.finfo(dtype or torch.float32).bits // 8,
        ema=ema,
        per_block=per_block,
    )


@contextlib.contextmanager
def _marking(blocks: list[nn.Module], current: list[int], inputs: dict[int, torch.Tensor]) -> Iterator[None]:
    """Wrap each block's `forward` as `checkpoint_activations` does, to note which block is running
    (the outermost, as checkpointing an outer block covers the inner ones) and the tensors it takes."""
    originals = []
    for index, block in enumerate(blocks):
        originals.append((block, block.__dict__.get("forward")))
        block.forward = functools.partial(_marked, block.forward, index, current, inputs)
    try:
        yield
    finally:
        for block, original in originals:
            if original is None:
                del block.forward
            else:
                block.forward = original


def _marked(forward: Callable, index: int, current: list[int], inputs: dict[int, torch.Tensor], *args, **kwargs):
    if current:
        return forward(*args, **kwargs)
    for t in _tensors((args, kwargs)):
        if t.device.type == "meta":
            inputs.setdefault(_storage_key(t), t)  # kept alive, as the checkpoint keeps it
    current.append(index)
    try:
        return forward(*args, **kwargs)
    finally:
        current.pop()


def _tensors(tree: Any) -> list[torch.Tensor]:
    return [x for x in tree_flatten(tree)[0] if isinstance(x, torch.Tensor)]
