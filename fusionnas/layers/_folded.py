"""Tensors derived from parameters, kept between inference calls until a parameter changes."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

__all__ = ["Folded", "fold_batch_norm"]


class Folded:
    """A value computed from ``sources``, recomputed only when one of them changes (inference only).

    An operator's native kernel takes its parameters folded (scaled, thresholds' absolute values,
    a batch norm's scale and shift): a few small tensor ops whose Python cost per call is as large
    as a small layer's work. An in-place update (an optimiser step, ``load_state_dict``) bumps a
    tensor's version counter and a replaced tensor has another identity; either recomputes. With
    autograd on, the value is computed afresh, so that gradients flow.
    """

    __slots__ = ("_key", "_value")

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._value: Any = None

    def __call__(self, sources: Sequence[torch.Tensor | None], compute: Callable[[], Any]) -> Any:
        if torch.is_grad_enabled() or torch.compiler.is_compiling():  # a compiled graph folds them itself
            return compute()
        key = tuple((id(t), t._version) for t in sources if t is not None)
        if key != self._key:
            self._value, self._key = compute(), key
        return self._value

    def __getstate__(self) -> dict:  # deep copies and pickles of a module recompute
        return {}

    def __setstate__(self, state: dict) -> None:
        self._key, self._value = None, None


def fold_batch_norm(bn: torch.nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scale, shift)`` per channel with ``bn(y) == scale * y + shift`` in eval mode."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale
