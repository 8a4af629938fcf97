"""Peak activation memory of one inference pass."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from fusionnas.evaluators.timing import batch_shape
from fusionnas.evaluators.training import eval_mode

__all__ = ["peak_activation_bytes"]


@torch.no_grad()
def peak_activation_bytes(model: nn.Module, input_shape: Sequence[int], batch_size: int = 1) -> int:
    """Estimated peak activation memory (bytes) of one inference pass, layer by layer.

    While a leaf module runs, its input and output are alive, plus the input
    of every enclosing block that adds a residual (``use_residual``) and is
    still held for the addition. The peak is the largest such sum: the
    usual estimate for sequential inference (as MCUNet uses); allocator
    slack and operator workspaces are not included.
    """
    shape = batch_shape(input_shape, batch_size)
    held: list[int] = []
    peak = 0
    hooks = []

    def nbytes(values: Any) -> int:
        if torch.is_tensor(values):
            return values.numel() * values.element_size()
        if isinstance(values, (tuple, list)):
            return sum(nbytes(v) for v in values)
        return 0

    def pre_block(m: nn.Module, inputs: tuple[Any, ...]) -> None:
        held.append(nbytes(inputs) if getattr(m, "use_residual", False) else 0)

    def post_block(m: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        held.pop()

    def leaf(m: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        nonlocal peak
        peak = max(peak, nbytes(inputs) + nbytes(output) + sum(held))

    for m in model.modules():
        if hasattr(m, "use_residual"):
            hooks += [m.register_forward_pre_hook(pre_block), m.register_forward_hook(post_block)]
        if not list(m.children()):
            hooks.append(m.register_forward_hook(leaf))
    try:
        with eval_mode(model):
            param = next(model.parameters(), None)
            model(torch.zeros(shape, dtype=param.dtype if param is not None else torch.float32))
    finally:
        for h in hooks:
            h.remove()
    return peak
