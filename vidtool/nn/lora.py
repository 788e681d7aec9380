"""LoRA adapters as MotionAura §4 and App. F.2 use them for sketch-guided inpainting.

Both kinds share one shape, L'(x) = L(x) + W_up(GeLU(W_down(x))) with W_down ∈ R^(l×d), l < d:
- attention LoRA sits in parallel with the K and Q projections: the adapter reads the layer's input;
- feed-forward LoRA sits sequentially after the output feed-forward layer: the adapter reads the
  layer's output and adds to it.
W_down is drawn from the distribution (mean, std) of the frozen layer's weights "to maintain
coherence with the frozen layer"; W_up starts at zero, so a fresh adapter reproduces the base model
exactly. With `activation="identity"` the adapter is linear (classic LoRA) and `merged()` folds it
into the frozen weight; with GeLU (the paper's choice) it stays a separate branch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = ("gelu", "identity")


class LoRA(nn.Module):
    def __init__(self, d_in: int, d_out: int, rank: int, *, activation: str = "gelu",
                 init_like: torch.Tensor | None = None):
        super().__init__()
        assert activation in ACTIVATIONS, f"LoRA activation must be one of {ACTIVATIONS}, got {activation!r}"
        assert 0 < rank < min(d_in, d_out), f"LoRA rank must be below the layer width {min(d_in, d_out)}; got {rank}"
        self.activation = activation
        self.down = nn.Linear(d_in, rank, bias=False)
        self.up = nn.Linear(rank, d_out, bias=False)
        nn.init.zeros_(self.up.weight)
        if init_like is not None:
            with torch.no_grad():
                self.down.weight.normal_(float(init_like.mean()), float(init_like.std()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.down(x)
        return self.up(F.gelu(hidden) if self.activation == "gelu" else hidden)


class ParallelLoRALinear(nn.Module):
    """Attention LoRA: base(x) + adapter(x)."""

    def __init__(self, base: nn.Linear, rank: int, activation: str = "gelu"):
        super().__init__()
        self.base = base
        self.lora = LoRA(base.in_features, base.out_features, rank, activation=activation, init_like=base.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.lora(x)

    def merged(self) -> nn.Linear:
        """The frozen layer with a linear adapter folded in: W + W_up W_down."""
        assert self.lora.activation == "identity", "only a linear (activation='identity') LoRA folds into the weight"
        layer = nn.Linear(self.base.in_features, self.base.out_features, bias=self.base.bias is not None)
        with torch.no_grad():
            layer.weight.copy_(self.base.weight + self.lora.up.weight @ self.lora.down.weight)
            if self.base.bias is not None:
                layer.bias.copy_(self.base.bias)
        return layer


class SequentialLoRALinear(nn.Module):
    """Feed-forward LoRA: y = base(x); y + adapter(y)."""

    def __init__(self, base: nn.Linear, rank: int, activation: str = "gelu"):
        super().__init__()
        self.base = base
        self.lora = LoRA(base.out_features, base.out_features, rank, activation=activation, init_like=base.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        return y + self.lora(y)

    def merged(self) -> nn.Linear:
        """(I + W_up W_down)(W x + b), one linear layer when the adapter is linear."""
        assert self.lora.activation == "identity", "only a linear (activation='identity') LoRA folds into the weight"
        adapter = torch.eye(self.base.out_features) + self.lora.up.weight @ self.lora.down.weight
        layer = nn.Linear(self.base.in_features, self.base.out_features, bias=self.base.bias is not None)
        with torch.no_grad():
            layer.weight.copy_(adapter @ self.base.weight)
            if self.base.bias is not None:
                layer.bias.copy_(adapter @ self.base.bias)
        return layer


def inject(module: nn.Module, names: dict[str, type], rank: int, activation: str) -> list[str]:
    """Replace every nn.Linear whose attribute name is a key of `names` (e.g. {"to_q":
    ParallelLoRALinear}) by the wrapper class; returns the qualified names replaced."""
    replaced = []
    for parent_name, parent in list(module.named_modules()):
        for child_name, child in list(parent.named_children()):
            if child_name in names and isinstance(child, nn.Linear):
                setattr(parent, child_name, names[child_name](child, rank, activation))
                replaced.append(f"{parent_name}.{child_name}".lstrip("."))
    return replaced


def merge(module: nn.Module) -> int:
    """Fold every linear adapter in `module` into its frozen layer; returns how many were folded."""
    count = 0
    for parent in list(module.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, (ParallelLoRALinear, SequentialLoRALinear)):
                setattr(parent, child_name, child.merged())
                count += 1
    return count
