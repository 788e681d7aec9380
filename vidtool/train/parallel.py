"""How the trainer spreads a model over ranks: DDP (a full replica per rank) or FSDP2 (`fully_shard`:
each rank holds a 1/N slice of every parameter, gradient and optimizer moment), plus activation
checkpointing.

Checkpoints stay consolidated whatever the strategy: weights, optimizer moments and the EMA are
gathered into full tensors on rank 0's CPU (one tensor at a time: no rank holds a whole model beyond
its shards), so a run saved by N ranks of either strategy resumes on M ranks of either; on resume
under FSDP only rank 0 reads the file, and the other ranks receive their shards from it. Under FSDP
only rank 0 builds the model with its weights (on its host); the others build it on the meta device
and every rank allocates only its shards on the accelerator (`shard`). The optimizer state is kept in the layout of `torch.optim.Optimizer.state_dict()` (parameters
numbered in param-group order), which `_adamw` makes the same for every strategy and world size.

The unit of sharding and of activation checkpointing is a *block*: a child of an `nn.ModuleList` of
layers that holds no list of layers itself (a ResNet block, a transformer block) — the modules the
forward passes call one after another, whose parameters are needed together.

Limits of FSDP here: each block's gradients are reduce-scattered by a collective that its backward
pass triggers, so ranks are expected to run the same blocks in a step. Models whose batches skip
blocks rank by rank (cm-vae's joint image/video batches skip the temporal layers for images) are
untested under FSDP and should use DDP, which is built for unused parameters. fp16 is refused (its gradient scaler would have to be sharded
too); bf16 is the mixed precision FSDP uses. Tested on CPU with gloo (tests/test_distributed.py);
the same calls run on NCCL, untested here for want of GPUs.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.checkpoint import checkpoint


def blocks(model: nn.Module, *, frozen: bool = False) -> list[nn.Module]:
    """The units, in module order: the children of `nn.ModuleList`s that are layers, i.e. hold no
    list of layers themselves — a ResNet block, a transformer block (diffusers' BasicTransformerBlock,
    whose `to_out`/`ff.net` lists hold only plain Linear/Dropout modules), an autoencoder level's
    residual block. `frozen`: also inside the frozen modules a model keeps out of its own tree
    (`frozen_modules()`, e.g. the spectral model a LoRA adapter extends), for checkpointing."""
    found: list[nn.Module] = []

    def visit(module: nn.Module) -> None:
        for child in module.children():
            if not _lists_layers(child):
                visit(child)
                continue
            for item in child:
                if any(_lists_layers(m) for m in item.modules()):
                    visit(item)
                elif any(True for _ in item.parameters()):
                    found.append(item)

    visit(model)
    if frozen:
        for hidden in getattr(model, "frozen_modules", lambda: [])():
            visit(hidden)
    return found


def _lists_layers(module: nn.Module) -> bool:
    """A ModuleList of repeated layers: its items that own parameters are composite modules of one
    class (a U-Net level's ResNet blocks, a transformer's blocks) — not a small pipeline of mixed
    parts like a feed-forward's [GEGLU, Dropout, Linear] or an attention's [Linear, Dropout]."""
    if not isinstance(module, nn.ModuleList):
        return False
    layers = [item for item in module if any(True for _ in item.parameters())]
    return (len({type(item) for item in layers}) == 1
            and all(any(True for _ in item.children()) for item in layers))


def checkpoint_activations(model: nn.Module) -> int:
    """Recompute each block's activations in the backward pass instead of keeping them; returns the
    number of blocks. Parameter names do not change (the block's `forward` is wrapped, not the block),
    so checkpoints are the same with and without it."""
    wrapped = blocks(model, frozen=True)
    holders = [m for m in model.modules() if hasattr(m, "checkpoint_state")]
    for hidden in getattr(model, "frozen_modules", lambda: [])():
        holders += [m for m in hidden.modules() if hasattr(m, "checkpoint_state")]
    for block in wrapped:
        block.forward = functools.partial(_checkpointed, block.forward, holders)
    return len(wrapped)


def _checkpointed(forward: Any, holders: list[nn.Module], *args: Any, **kwargs: Any) -> Any:
    # Non-reentrant checkpointing keeps the RNG state of the first pass (dropout replays exactly) and
    # works inside FSDP2's unshard/reshard hooks, which run around `forward` in `Module.__call__`.
    # Modules whose forward reads call-scoped state set by an outer call (a video U-Net's sequence
    # length, the clip a frozen T2I U-Net's temporal hooks belong to) expose `checkpoint_state()`:
    # a context, captured now, that reinstates it for the recomputation in the backward pass, when
    # the outer call has long returned.
    def contexts():
        return contextlib.nullcontext(), _entered([h.checkpoint_state() for h in holders])

    return checkpoint(forward, *args, use_reentrant=False, context_fn=contexts, **kwargs)


@contextlib.contextmanager
def _entered(contexts: list) -> Iterator[None]:
    with contextlib.ExitStack() as stack:
        for context in contexts:
            stack.enter_context(context)
        yield


def build_device(strategy: str) -> contextlib.AbstractContextManager:
    """Where a training process builds its model: under torchrun with FSDP every rank but 0 builds it
    on the meta device (shapes only: no memory, no weights read), since `shard` fills it from rank
    0's weights; otherwise on the host as usual."""
    import os

    others = strategy == "fsdp" and int(os.environ.get("WORLD_SIZE", "1")) > 1 and int(os.environ.get("RANK", "0")) != 0
    return torch.device("meta") if others else contextlib.nullcontext()


def _frozen(model: nn.Module) -> list[nn.Module]:
    return getattr(model, "frozen_modules", list)()


def shard(root: nn.Module, model: nn.Module, param_dtype: torch.dtype | None, device: torch.device | str) -> None:
    """FSDP2 over the process group: each block of `model` is one all-gather unit and `root` (the
    module whose forward computes the losses) holds the remaining parameters. With `param_dtype`
    the blocks compute in that dtype while the sharded master weights, gradients reduction and the
    optimizer stay fp32 (mixed precision).

    Rank 0's model holds the weights (on its host); the other ranks' may sit on the meta device
    (`build_device`). Every rank moves its model to meta, shards it there and `materialise`s it on
    `device`, so no rank ever holds more of the model on `device` than its shards, and every rank
    ends with rank 0's weights (sharding, unlike DDP, does not synchronise replicas)."""
    weights = full_weights(model) if dist.get_rank() == 0 else None
    model.to("meta")
    for hidden in _frozen(model):
        hidden.to("meta")
    wrap(root, model, param_dtype)
    materialise(model, weights, device, param_dtype)


def full_weights(model: nn.Module) -> list[dict[str, torch.Tensor]]:
    """What `materialise` fills a model from: its state dict, then each hidden frozen module's."""
    return [model.state_dict(), *(hidden.state_dict() for hidden in _frozen(model))]


def wrap(root: nn.Module, model: nn.Module, param_dtype: torch.dtype | None) -> None:
    """`fully_shard` each block of `model`, then `root`, with the mixed-precision policy."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    policy = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32)
    for block in blocks(model):
        fully_shard(block, mp_policy=policy)
    fully_shard(root, mp_policy=policy)


def materialise(model: nn.Module, weights: list[dict[str, torch.Tensor]] | None, device: torch.device | str,
                param_dtype: torch.dtype | None = None) -> None:
    """Allocate a sharded model (built or moved to the meta device) on `device` shard by shard, and
    fill it from rank 0's `weights` (`full_weights`; None on the other ranks): the state dict is
    broadcast one tensor at a time, each rank keeping its shard (torch.distributed.checkpoint's
    `broadcast_from_rank0`). A frozen module kept out of the model's tree (a LoRA adapter's base) is
    replicated whole, its frozen weights cast once to `param_dtype` (no master copy is needed for
    weights that never update), so it computes in the dtype FSDP casts the trainable ones to.
    Constants that are not saved (non-persistent buffers) are recomputed by their modules."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    rank0 = dist.get_rank() == 0
    model.to_empty(device=device)
    for hidden in _frozen(model):
        hidden.to_empty(device=device)
    options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
    set_model_state_dict(model, weights[0] if rank0 else {}, options=options)
    with torch.no_grad():
        for i, hidden in enumerate(_frozen(model), start=1):
            for name, tensor in hidden.state_dict().items():
                if is_sharded(tensor):  # shared with the model's tree (an adapter): loaded above
                    continue
                if rank0:
                    tensor.copy_(weights[i][name])
                dist.broadcast(tensor, src=0)
            if param_dtype is not None:
                for p in hidden.parameters():
                    if not p.requires_grad:
                        p.data = p.data.to(param_dtype)
    for module in [*model.modules(), *(m for hidden in _frozen(model) for m in hidden.modules())]:
        if module._non_persistent_buffers_set:
            reset = getattr(module, "reset_non_persistent_buffers", None)
            assert reset is not None, (f"{type(module).__name__} has non-persistent buffers, which to_empty leaves "
                                       "uninitialised; give it reset_non_persistent_buffers() to recompute them")
            reset()


def is_sharded(tensor: torch.Tensor) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(tensor, DTensor)


def full(tensor: torch.Tensor) -> torch.Tensor:
    """The whole tensor of a shard (a collective: every rank calls it), or the tensor itself."""
    return tensor.full_tensor() if is_sharded(tensor) else tensor


def shard_like(full_tensor: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Cut this rank's piece of `full_tensor` the way `like` is sharded."""
    if not is_sharded(like):
        return full_tensor.to(like.device)
    from torch.distributed.tensor import distribute_tensor

    return distribute_tensor(full_tensor.to(like.device_mesh.device_type), like.device_mesh, like.placements)


def full_on_rank0(tensors: dict[str, torch.Tensor], rank: int) -> dict[str, torch.Tensor] | None:
    """Whole tensors on rank 0's CPU (None elsewhere), gathered one at a time (a collective), so no
    rank ever holds more than one whole tensor beyond its shards."""
    gathered = {}
    for name, tensor in tensors.items():
        whole = full(tensor)
        if rank == 0:
            gathered[name] = whole.cpu()
        del whole
    return gathered if rank == 0 else None


def full_model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Full weights and buffers on the CPU of rank 0 (empty elsewhere); a collective."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimizer's full state on rank 0 (empty elsewhere), numbered like `optimizer.state_dict()`."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    by_name = get_optimizer_state_dict(model, optimizer,
                                       options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if not by_name:
        return {}
    order = [name for group in by_name["param_groups"] for name in group["params"]]
    index = {name: i for i, name in enumerate(order)}
    return {
        "state": {index[name]: value for name, value in by_name["state"].items()},
        "param_groups": [{**group, "params": [index[name] for name in group["params"]]}
                         for group in by_name["param_groups"]],
    }


def load_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, numbered: dict[str, Any]) -> None:
    """Load a full, numbered optimizer state into a sharded optimizer: rank 0 passes it, the other
    ranks an empty dict, and each rank receives its shards from rank 0 (a collective)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    by_name = {}
    if numbered:
        name_of = {id(p): name for name, p in model.named_parameters()}
        order = [name_of[id(p)] for group in optimizer.param_groups for p in group["params"]]
        by_name = {
            "state": {order[i]: value for i, value in numbered["state"].items()},
            "param_groups": [{**group, "params": [order[i] for i in group["params"]]}
                             for group in numbered["param_groups"]],
        }
    options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
    set_optimizer_state_dict(model, optimizer, by_name, options=options)
