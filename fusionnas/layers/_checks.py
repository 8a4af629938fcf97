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


def is_tracing() -> bool:
    """True while a JIT trace (fvcore's FLOP count) or an ONNX export records the forward."""
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()


def fast_path_allowed(x: torch.Tensor) -> bool:
    """Whether an operator may take its hand-scheduled inference path for ``x``.

    Not while tracing (the recorded graph must be the reference form), not
    under autocast (the fast paths write into preallocated buffers of the
    input's dtype, which autocast's mixed dtypes break), not with autograd.
    """
    return not (torch.is_grad_enabled() or is_tracing() or torch.is_autocast_enabled(x.device.type))
