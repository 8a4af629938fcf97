"""The transforms as single ONNX nodes of domain ``fusionnas``: the *native* export form.

Inside :func:`native_form` (``to_onnx(..., form="native")``), the layers' export
paths emit one node per transform (through :func:`wht_pointwise_node` and its siblings), its parameters folded into initializers,
instead of the standard-operator form; FusionBN folds its batch norm and ReLU6
into the node. OpenVINO runs these nodes with the extension
``lib/libfusionnas_openvino.so`` (``openvino/extension.cpp``), onnxruntime not
at all. Node signatures (float32; ``x`` NCHW; semantics of ``csrc/fusionnas_kernels.h``):

- ``WHTPointwise(x, coef[n], thr[n], out_scale[c_out], out_shift[c_out])``,
  attributes ``n``, ``c_out``, ``act`` (0 none, 1 ReLU6): ``fn_wht_pointwise``.
- ``Butterfly(x, w_0, ..., w_{L-1}, out_scale[c_out], out_shift[c_out])``,
  attributes ``c_out``, ``width_in``, ``shape`` (``G, k_out, k_in`` per stage,
  ``w_s`` of that shape), ``act``: ``fn_butterfly``.
- ``WHT2d(x, coef[C or 1, th, tw], thr[C or 1, th, tw])``, attributes
  ``tile`` (``th, tw``), ``stride``, ``out_norm``: ``fn_wht2d`` (WHT2d and
  HadamardDepthwise; one coefficient row is shared by all channels).

:data:`REFERENCES` defines each node type in NumPy; the nodes' forwards while
exporting compute it, so exporting needs no native code.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fusionnas.errors import UserError

__all__ = ["DOMAIN", "DOMAIN_VERSION", "OPENVINO_EXTENSION", "REFERENCES", "native_form", "native_form_enabled",
           "wht_pointwise_node", "butterfly_node", "wht2d_node", "finish_graph", "has_native_nodes",
           "openvino_extension", "butterfly", "wht2d", "wht_pointwise"]

DOMAIN = "fusionnas"
DOMAIN_VERSION = 1
OPENVINO_EXTENSION = Path(__file__).resolve().parent / "lib" / "libfusionnas_openvino.so"
# Names of the parameter inputs (after x) of each node, for the initializers they become.
_INPUT_ROLES = {"WHTPointwise": ("coef", "thr", "out_scale", "out_shift"), "WHT2d": ("coef", "thr")}

_native: ContextVar[bool] = ContextVar("fusionnas_native_form", default=False)


@contextmanager
def native_form() -> Iterator[None]:
    """Inside the block, exported layers emit fusionnas-domain nodes (see the module docstring)."""
    token = _native.set(True)
    try:
        yield
    finally:
        _native.reset(token)


def native_form_enabled() -> bool:
    """Whether an export now writes the native form (inside :func:`native_form` and an ONNX export)."""
    return _native.get() and torch.onnx.is_in_onnx_export()


def wht_pointwise_node(x: torch.Tensor, coef: torch.Tensor, thr: torch.Tensor, out_scale: torch.Tensor,
                       out_shift: torch.Tensor, act: int) -> torch.Tensor | None:
    """A ``WHTPointwise`` node while exporting the native form (inputs as :data:`REFERENCES` defines them), else None."""
    if not _exporting_native(x):
        return None
    n = int(coef.shape[0])
    return _WHTPointwiseNode.apply(x, _array(coef), _array(thr), _array(out_scale), _array(out_shift), n, act)


def butterfly_node(x: torch.Tensor, weights: Sequence[torch.Tensor], out_scale: torch.Tensor, out_shift: torch.Tensor,
                   width_in: int, act: int) -> torch.Tensor | None:
    """A ``Butterfly`` node while exporting the native form, else None."""
    if not _exporting_native(x):
        return None
    arrays = tuple(_array(w) for w in weights)
    return _ButterflyNode.apply(x, arrays, _array(out_scale), _array(out_shift), width_in, act)


def wht2d_node(x: torch.Tensor, coef: torch.Tensor, thr: torch.Tensor, stride: int,
               out_norm: float) -> torch.Tensor | None:
    """A ``WHT2d`` node while exporting the native form, else None (coef, thr: (C or 1, t_h, t_w))."""
    if not _exporting_native(x):
        return None
    return _WHT2dNode.apply(x, _array(coef), _array(thr), stride, out_norm)


def _exporting_native(x: torch.Tensor) -> bool:
    return native_form_enabled() and x.dtype == torch.float32 and x.dim() == 4


def _array(t: torch.Tensor) -> np.ndarray:
    """A parameter as a constant float32 array: the node takes it as an initializer, never as a traced value."""
    return np.ascontiguousarray(t.detach().cpu().to(torch.float32).numpy())


def _emit(g, op: str, x, arrays: Sequence[np.ndarray], out_sizes: Sequence[int | None], **attributes):
    """The node ``fusionnas::op(x, *arrays)`` with its output type set (dynamic batch)."""
    inputs = [g.op("Constant", value_t=torch.from_numpy(a)) for a in arrays]
    y = g.op(f"{DOMAIN}::{op}", x, *inputs, **attributes)
    y.setType(x.type().with_sizes([None, *out_sizes]))
    return y


def _input_sizes(x) -> list[int]:
    sizes = x.type().varyingSizes()
    if sizes is None or len(sizes) != 4 or any(s is None for s in sizes[1:]):
        raise RuntimeError("a fusionnas node needs an NCHW input of known channels and map size")
    return sizes


@functools.lru_cache(maxsize=16)
def _hadamard(n: int) -> np.ndarray:
    """Sylvester-ordered n x n Hadamard matrix (``fusionnas.layers.fwht.hadamard``) in NumPy."""
    h = np.ones((1, 1), np.float32)
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    return h


def _smooth(u: np.ndarray, thr: np.ndarray) -> np.ndarray:
    return np.tanh(u) * np.maximum(np.abs(u) - thr, 0)


def _activate(y: np.ndarray, act: int) -> np.ndarray:
    return np.ascontiguousarray(np.clip(y, 0, 6) if act else y, dtype=np.float32)


def wht_pointwise(x: np.ndarray, coef: np.ndarray, thr: np.ndarray, out_scale: np.ndarray, out_shift: np.ndarray, *,
                  n: int, act: int = 0, **_) -> np.ndarray:
    """WHTPointwise: per pixel ``act(out_scale * crop(H S(coef * H pad(x))) + out_shift)``, S smooth thresholding."""
    n_img, c_in, h, w = x.shape
    c_out, hn = out_scale.shape[0], _hadamard(n)
    z = np.matmul(hn[:, :c_in], x.reshape(n_img, c_in, h * w))
    s = _smooth(coef[:, None] * z, thr[:, None])
    y = out_scale[:, None] * np.matmul(hn[:c_out], s) + out_shift[:, None]
    return _activate(y.reshape(n_img, c_out, h, w), act)


def butterfly(x: np.ndarray, *inputs: np.ndarray, width_in: int, act: int = 0, **_) -> np.ndarray:
    """Butterfly(x, w_0, ..., out_scale, out_shift): the stages on x padded to ``width_in``, cropped, then
    ``act(out_scale * y + out_shift)``."""
    *weights, out_scale, out_shift = inputs
    n_img, c_in, h, w = x.shape
    c_out = out_scale.shape[0]
    y = np.zeros((n_img, width_in, h * w), np.float32)
    y[:, :c_in] = x.reshape(n_img, c_in, h * w)
    for weight in weights:
        groups, k_out, k_in = weight.shape
        # Channel i*G + g of the stage's input feeds channel g*k_out + o of its output.
        y = np.matmul(weight, y.reshape(n_img, k_in, groups, h * w).transpose(0, 2, 1, 3))
        y = y.reshape(n_img, groups * k_out, h * w)
    y = y[:, :c_out] * out_scale[:, None] + out_shift[:, None]
    return _activate(y.reshape(n_img, c_out, h, w), act)


def wht2d(x: np.ndarray, coef: np.ndarray, thr: np.ndarray, *, stride: int, out_norm: float, **_) -> np.ndarray:
    """WHT2d: per tile (zero-padded map) ``out_norm * H S(coef * H tile H) H``, 2x2 averages at stride 2, cropped."""
    n_img, c, h, w = x.shape
    rows, th, tw = coef.shape
    ph, pw = math.ceil(h / th) * th, math.ceil(w / tw) * tw
    padded = np.zeros((n_img, c, ph, pw), np.float32)
    padded[:, :, :h, :w] = x
    tiles = padded.reshape(n_img, c, ph // th, th, pw // tw, tw).transpose(0, 1, 2, 4, 3, 5)  # (..., th, tw)
    hh, hw = _hadamard(th), _hadamard(tw)
    per_tile = (1, rows, 1, 1, th, tw)
    s = _smooth(hh @ tiles @ hw * coef.reshape(per_tile), thr.reshape(per_tile))
    y = (out_norm * (hh @ s @ hw)).transpose(0, 1, 2, 4, 3, 5).reshape(n_img, c, ph, pw)
    if stride == 2:
        y = y.reshape(n_img, c, ph // 2, 2, pw // 2, 2).mean(axis=(3, 5))
    return _activate(y[:, :, : math.ceil(h / stride), : math.ceil(w / stride)], 0)


# The definition of each node type, called with x, the other inputs and the attributes by name.
REFERENCES = {"WHTPointwise": wht_pointwise, "Butterfly": butterfly, "WHT2d": wht2d}


def _forward(op: str, x: torch.Tensor, *inputs: np.ndarray, **attributes) -> torch.Tensor:
    # NumPy, not torch: the tracer records the node alone, not every operation inside its forward
    # (which made exporting a network take seconds per layer).
    return torch.from_numpy(REFERENCES[op](x.detach().numpy(), *inputs, **attributes))


class _WHTPointwiseNode(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, coef, thr, out_scale, out_shift, n, act):  # noqa: D102
        return _forward("WHTPointwise", x, coef, thr, out_scale, out_shift, n=n, act=act)

    @staticmethod
    def symbolic(g, x, coef, thr, out_scale, out_shift, n, act):  # noqa: D102
        _, _, h, w = _input_sizes(x)
        c_out = int(out_scale.shape[0])
        return _emit(g, "WHTPointwise", x, (coef, thr, out_scale, out_shift), (c_out, h, w), n_i=n, c_out_i=c_out,
                     act_i=act)


class _ButterflyNode(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weights, out_scale, out_shift, width_in, act):  # noqa: D102
        return _forward("Butterfly", x, *weights, out_scale, out_shift, width_in=width_in, act=act)

    @staticmethod
    def symbolic(g, x, weights, out_scale, out_shift, width_in, act):  # noqa: D102
        _, _, h, w = _input_sizes(x)
        c_out = int(out_scale.shape[0])
        shape = [int(d) for weight in weights for d in weight.shape]
        return _emit(g, "Butterfly", x, (*weights, out_scale, out_shift), (c_out, h, w), c_out_i=c_out,
                     width_in_i=width_in, shape_i=shape, act_i=act)


class _WHT2dNode(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, coef, thr, stride, out_norm):  # noqa: D102
        return _forward("WHT2d", x, coef, thr, stride=stride, out_norm=out_norm)

    @staticmethod
    def symbolic(g, x, coef, thr, stride, out_norm):  # noqa: D102
        _, c, h, w = _input_sizes(x)
        _, th, tw = coef.shape
        out = (c, math.ceil(h / stride), math.ceil(w / stride))
        return _emit(g, "WHT2d", x, (coef, thr), out, tile_i=[int(th), int(tw)], stride_i=stride,
                     out_norm_f=out_norm)


def finish_graph(graph: bytes) -> bytes:
    """The exported native graph with each fusionnas node's constant inputs as named initializers
    (``<node>.coef``, ``<node>.w1``, ...) instead of Constant nodes, the domain at :data:`DOMAIN_VERSION`."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(graph)
    for entry in model.opset_import:  # the exporter imports a custom domain it was not told of at version 1
        if entry.domain == DOMAIN:
            entry.version = DOMAIN_VERSION
    nodes = model.graph.node
    producers = {out: node for node in nodes if node.op_type == "Constant" for out in node.output}
    consumers: dict[str, int] = {}
    for node in nodes:
        for name in node.input:
            consumers[name] = consumers.get(name, 0) + 1
    moved: set[str] = set()  # outputs of the Constant nodes turned into initializers
    initializers = {init.name for init in model.graph.initializer}
    for node in nodes:
        if node.domain != DOMAIN:
            continue
        # Butterfly: x, the stage weights, out_scale, out_shift
        roles = _INPUT_ROLES.get(node.op_type) or (*(f"w{s}" for s in range(len(node.input) - 3)), "out_scale",
                                                   "out_shift")
        for index, role in enumerate(roles, start=1):
            constant = producers.get(node.input[index])
            if constant is None or consumers[node.input[index]] != 1 or constant.attribute[0].name != "value":
                continue
            array = numpy_helper.to_array(constant.attribute[0].t)
            name = f"{node.name or node.op_type}.{role}"
            if name in initializers:  # unnamed nodes
                name = f"{name}_{len(initializers)}"
            initializers.add(name)
            model.graph.initializer.append(numpy_helper.from_array(array, name))
            moved.add(node.input[index])
            node.input[index] = name
    for index in reversed(range(len(nodes))):
        if nodes[index].op_type == "Constant" and nodes[index].output[0] in moved:
            del nodes[index]
    return model.SerializeToString()


def has_native_nodes(graph: bytes) -> bool:
    """Whether ``graph`` imports the fusionnas domain (its nodes run only in OpenVINO with the extension)."""
    import onnx

    return any(entry.domain == DOMAIN for entry in onnx.load_from_string(graph).opset_import)


def openvino_extension() -> Path:
    """The OpenVINO extension library; a UserError where it was not built."""
    if not OPENVINO_EXTENSION.exists():
        raise UserError(f"the OpenVINO extension for fusionnas nodes ({OPENVINO_EXTENSION.name}) is not built: run "
                        f"`python -m fusionnas.kernels.build` (it needs cmake and the openvino wheel), or export the "
                        f"standard form")
    return OPENVINO_EXTENSION
