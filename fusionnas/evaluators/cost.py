"""Parameter and FLOP counts: fvcore's counter plus handles for what it does not know.

Convention (fvcore's): one multiply-add = 1 FLOP for convolutions, matmuls and
einsums; batch norm as fvcore counts it. On top of fvcore's stock handles:

* every registered operator's own handles (an n-point Walsh-Hadamard
  transform counts n log2 n add/subs);
* element-wise arithmetic (add, mul, tanh, ReLU/ReLU6, ...) counts one FLOP
  per output element. fvcore leaves these out, but in a transform layer they
  are the layer's work (scales, thresholds), so leaving them out would make
  such layers look free next to a conv;
* pooling counts one FLOP per input element.

Anything else that fvcore meets and cannot count is reported with a warning
naming the operators, never silently counted as zero.
"""
from __future__ import annotations

import logging
import math
import warnings
from typing import Any, Sequence

import torch
from torch import nn

from fusionnas.evaluators.training import eval_mode
from fusionnas.layers.registry import operator_flop_handles

with warnings.catch_warnings():  # fvcore imports torch.jit.script, deprecated in torch 2.x
    warnings.simplefilter("ignore", FutureWarning)
    from fvcore.nn import FlopCountAnalysis
    from fvcore.nn.jit_handles import get_shape

__all__ = ["count_flops", "count_params", "elementwise_flops", "flop_breakdown", "module_flops", "ELEMENTWISE_OPS"]

# Element-wise operators counted at one FLOP per output element.
ELEMENTWISE_OPS: tuple[str, ...] = tuple(
    f"aten::{name}{suffix}"
    for name in (
        "add", "sub", "rsub", "mul", "div", "neg", "abs", "sign", "tanh", "sigmoid",
        "relu", "relu6", "hardtanh", "hardswish", "hardsigmoid", "silu", "gelu",
        "clamp", "clamp_min", "clamp_max", "exp", "sqrt", "rsqrt", "reciprocal",
        "square", "pow", "minimum", "maximum", "where",
    )
    for suffix in ("", "_")
)

# Operators counted at one FLOP per input element (a window sum per output).
POOLING_OPS: tuple[str, ...] = (
    "aten::avg_pool2d",
    "aten::max_pool2d",
    "aten::adaptive_max_pool2d",
    "aten::mean",
    "aten::sum",
)


def _output_numel(inputs: list[Any], outputs: list[Any]) -> int:
    shape = get_shape(outputs[0])
    return math.prod(shape) if shape is not None else 0


def _input_numel(inputs: list[Any], outputs: list[Any]) -> int:
    shape = get_shape(inputs[0])
    return math.prod(shape) if shape is not None else 0


def _matmul_flops(inputs: list[Any], outputs: list[Any]) -> int:
    """Multiply-adds of a broadcasting matmul: output elements x contracted length.

    fvcore's stock handle multiplies the first operand's size by the last
    dim of the second, which undercounts ``(f, f) @ (B, f, R)``.
    """
    a, b = (get_shape(v) for v in inputs)
    out = get_shape(outputs[0])
    return math.prod(out) * a[-1]


# Data movement that costs no arithmetic (fvcore already ignores aten::constant_pad_nd).
ZERO_COST_OPS: tuple[str, ...] = ("aten::pad", "aten::new_empty_strided", "aten::empty_like")

# op name (as fvcore sees it) -> handle; None marks an op as deliberately free. The operators'
# own handles (e.g. the FWHT's) come with their registration (fusionnas.layers.registry).
_HANDLES: dict[str, Any] = {
    **{op: None for op in ZERO_COST_OPS},
    "aten::matmul": _matmul_flops,
    **{op: _output_numel for op in ELEMENTWISE_OPS},
    **{op: _input_numel for op in POOLING_OPS},
}

_warned: set[str] = set()


def _analysis(model: nn.Module, input_shape: Sequence[int]) -> FlopCountAnalysis:
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    x = torch.zeros(tuple(input_shape), device=device, dtype=dtype)
    analysis = FlopCountAnalysis(model, (x,)).set_op_handle(**_HANDLES, **operator_flop_handles())
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    analysis.tracer_warnings("none")
    return analysis


def _run(model: nn.Module, input_shape: Sequence[int]) -> FlopCountAnalysis:
    """Trace ``model`` in eval mode (the deployed form) and warn about uncounted ops."""
    with eval_mode(model):
        analysis = _analysis(model, input_shape)
        # fvcore logs through `logging`; keep its tracer chatter out of user output.
        logger = logging.getLogger("fvcore.nn.jit_analysis")
        level = logger.level
        logger.setLevel(logging.ERROR)
        try:
            with torch.no_grad():
                analysis.total()
        finally:
            logger.setLevel(level)
    unsupported = set(analysis.unsupported_ops()) - _warned
    if unsupported:
        _warned.update(unsupported)
        warnings.warn(
            "FLOP count leaves out operators it cannot count: "
            + ", ".join(sorted(unsupported))
            + "; give the operator that uses them flop_handles in its @register_fusion",
            RuntimeWarning,
            stacklevel=3,
        )
    return analysis


def count_flops(model: nn.Module, input_shape: Sequence[int]) -> int:
    """FLOPs (multiply-adds = 1) of one forward pass of ``model`` in eval mode.

    Example:
        >>> count_flops(nn.Conv2d(8, 16, 1, bias=False), (1, 8, 4, 4))
        2048
    """
    return int(_run(model, input_shape).total())


def flop_breakdown(model: nn.Module, input_shape: Sequence[int]) -> dict[str, int]:
    """FLOPs per operator name, e.g. ``{"conv": ..., "FWHTFunction": ...}``."""
    return {op: int(v) for op, v in _run(model, input_shape).by_operator().items()}


def module_flops(model: nn.Module, input_shape: Sequence[int]) -> dict[str, dict[str, int]]:
    """FLOPs per submodule name (``""`` is ``model``) and operator, children included."""
    per_module = _run(model, input_shape).by_module_and_operator()
    return {name: {op: int(v) for op, v in ops.items()} for name, ops in per_module.items()}


def elementwise_flops(shape: Sequence[int]) -> int:
    """What :func:`count_flops` counts for one element-wise operator (e.g. a residual add) whose
    output has ``shape``: one FLOP per output element."""
    return math.prod(shape)


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
