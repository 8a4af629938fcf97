"""Input checks shared by the operators."""
from __future__ import annotations

import torch


def check_input(x: torch.Tensor, channels: int, layer: str) -> None:
    """Raise ``ValueError`` unless ``x`` is (N, channels, H, W)."""
    if x.dim() != 4:
        raise ValueError(f"{layer} expects a 4-D (N, C, H, W) input, got shape {tuple(x.shape)}")
    if x.shape[1] != channels:
        raise ValueError(
            f"{layer} expects {channels} input channels, got {x.shape[1]} "
            f"(input shape {tuple(x.shape)})"
        )


def check_positive(name: str, value: int) -> None:
    """Raise ``ValueError`` unless ``value`` is a positive int."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
