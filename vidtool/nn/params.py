"""Parameter counting shared by the models' `parameter_counts()` reports."""

from __future__ import annotations

from torch import nn


def parameter_count(*modules: nn.Module | None) -> int:
    """Number of parameters in the given modules; None entries (optional parts) count zero."""
    return sum(p.numel() for m in modules if m is not None for p in m.parameters())
