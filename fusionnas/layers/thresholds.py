"""Smooth thresholding, the non-linearity that denoises transform coefficients."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["SmoothThreshold", "smooth_threshold"]


def smooth_threshold(x: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """``tanh(x) * relu(|x| - |T|)``: soft thresholding smoothed by tanh.

    ``|T|`` keeps a threshold from turning into a gain when SGD drives it
    below zero (the seed code leaves T unconstrained).
    """
    return torch.tanh(x) * torch.relu(x.abs() - threshold.abs())


class SmoothThreshold(nn.Module):
    """Smooth thresholding with one trainable threshold per coefficient.

    Args:
        shape: shape of the threshold tensor; it must broadcast against the
            input (e.g. ``(n, 1)`` for coefficients on dim -2 of (N, n, P)).
        init: ``"ramp"`` starts the thresholds at ``i / (10 n)`` over the
            flattened coefficient index i (the seed's initialisation: the DC
            coefficient starts unthresholded), or a float for a constant.
    """

    def __init__(self, shape: int | tuple[int, ...], init: str | float = "ramp") -> None:
        super().__init__()
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        numel = 1
        for d in shape:
            numel *= d
        if init == "ramp":
            values = torch.arange(numel, dtype=torch.float32) / (10 * numel)
        elif isinstance(init, (int, float)):
            values = torch.full((numel,), float(init))
        else:
            raise ValueError(f"init must be 'ramp' or a number, got {init!r}")
        self.threshold = nn.Parameter(values.reshape(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return smooth_threshold(x, self.threshold)

    def extra_repr(self) -> str:  # noqa: D102
        return f"shape={tuple(self.threshold.shape)}"
