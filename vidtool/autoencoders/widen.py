"""Function-preserving widening of a trained convolutional autoencoder (Net2WiderNet, Chen et al.
2016): a model whose stage widths are whole multiples of a trained model's starts from that model's
weights and computes the same function, then trains on with the extra capacity.

Every widened channel dimension holds the source's channels followed by copies of them, in blocks:
[c_0 .. c_{C-1}, c_0 .. c_{C-1}, ...], the last block cut short where the new width is not a whole
multiple (C -> C + k copies c_0 .. c_{k-1} once). Output channels are copied as they are; a weight's
input channels are copied and divided by the number of copies of their source channel, so the sum
over the copies is the source's sum. A GroupNorm then sees groups that are whole copies of the
source's groups (the group size, e.g. `_norm`'s 8 channels, must stay the same), so its statistics
and output are the source's too. A single-group norm (the LFQ's, over the whole latent) may grow
by any amount: for whole multiples its statistics are the source's, otherwise they move by the
weight of the extra copies, which is how an LFQ grows more bits from a trained one. A
concatenation of n branches (`concat_inputs`) widens each branch in place rather than the
concatenated whole, by whole multiples.

Exact copies would get identical gradients and stay copies forever; `noise` adds N(0, (noise·σ)^2)
to each widened tensor (σ its source tensor's standard deviation) to break the symmetry.
"""

from __future__ import annotations

import torch
from torch import nn


def _index(source: int, target: int, blocks: int) -> torch.Tensor:
    """Target channel j -> the source channel it copies, for a dimension of `blocks` equal parts."""
    part_s, part_t = source // blocks, target // blocks
    j = torch.arange(target)
    return (j // part_t) * part_s + (j % part_t) % part_s


def _input_dim(module: nn.Module, name: str) -> int | None:
    if name != "weight" or isinstance(module, nn.GroupNorm):
        return None
    return 0 if isinstance(module, nn.ConvTranspose3d | nn.ConvTranspose2d) else 1


def widened_state(source: nn.Module, target: nn.Module, *, concat_inputs: dict[str, int] | None = None,
                  noise: float = 0.0, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """`target`'s state dict filled from `source`'s, widened where shapes differ.

    `concat_inputs` maps a module name suffix (e.g. "fuse") to how many branches its input
    concatenates. Raises ValueError where the two models differ in more than width."""
    concat_inputs = concat_inputs or {}
    sources = dict(source.named_modules())
    for name, norm in target.named_modules():
        theirs_norm = sources.get(name)  # a norm the source lacks is refused below, with its weights
        if isinstance(norm, nn.GroupNorm) and isinstance(theirs_norm, nn.GroupNorm):
            own_size = norm.num_channels // norm.num_groups
            their_size = theirs_norm.num_channels // theirs_norm.num_groups
            if own_size != their_size and (norm.num_groups, theirs_norm.num_groups) != (1, 1):
                raise ValueError(f"{name} would normalise groups of {own_size} channels instead of {their_size}: "
                                 "pick widths whose norms keep their group size (e.g. twice the initial ones)")
    theirs = source.state_dict()
    state = {}
    for key, own in target.state_dict().items():
        if key not in theirs:
            raise ValueError(f"{key} is not in the initial model: widening needs the same blocks, only wider")
        value = theirs[key]
        if value.shape == own.shape:
            state[key] = value.clone()
            continue
        path, _, name = key.rpartition(".")
        module = target.get_submodule(path)
        blocks = next((n for suffix, n in concat_inputs.items() if path.endswith(suffix)), 1)
        input_dim = _input_dim(module, name)
        if value.ndim != own.ndim or any(t < s or (dim == input_dim and blocks > 1 and t % s)
                                         for dim, (s, t) in enumerate(zip(value.shape, own.shape))):
            raise ValueError(f"{key} is {tuple(value.shape)} in the initial model and {tuple(own.shape)} here: "
                             "not a widening")
        widened = value.float()
        for dim, (s, t) in enumerate(zip(value.shape, own.shape)):
            if s == t:
                continue
            index = _index(s, t, blocks if dim == input_dim else 1)
            widened = widened.index_select(dim, index)
            if dim == input_dim:
                copies = torch.bincount(index, minlength=s)[index].to(widened.dtype)
                widened = widened / copies.reshape([-1] + [1] * (widened.ndim - dim - 1))
        if noise > 0 and value.numel() > 1:
            scale = noise * float(value.float().std())
            widened = widened + scale * torch.randn(widened.shape, generator=generator)
        state[key] = widened.to(own.dtype)
    return state
