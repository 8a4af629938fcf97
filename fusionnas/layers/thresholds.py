"""Smooth thresholding, the non-linearity that denoises transform coefficients."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["SmoothThreshold", "smooth_threshold", "smooth_threshold_of_scaled_"]


def smooth_threshold(x: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """``tanh(x) * relu(|x| - |T|)``: soft thresholding smoothed by tanh.

    ``|T|`` keeps a threshold from turning into a gain when SGD drives it
    below zero (the seed code leaves T unconstrained).
    """
    return torch.tanh(x) * torch.relu(x.abs() - threshold.abs())


@torch.no_grad()
def smooth_threshold_of_scaled_(z: torch.Tensor, scale: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """``smooth_threshold(z * scale, threshold)`` computed in ``z``'s memory (inference only).

    With ``u = 2 z scale``: ``tanh(u / 2) = 2 sigmoid(u) - 1`` and ``relu(|u| - 2|T|)`` is twice
    the soft threshold, so the result is ``(sigmoid(u) - 1/2) relu(|u| - 2|T|)``: sigmoid, several
    times cheaper than tanh on a CPU, and one new tensor instead of five.
    """
    u = z.mul_(2 * scale)
    kept = u.abs().sub_(2 * threshold.abs()).clamp_(min=0)
    return u.sigmoid_().sub_(0.5).mul_(kept)


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
