"""A model as the ONNX graph a user deploys, checked against torch in onnxruntime.

:func:`to_onnx` is the one export path: ``fusionnas export`` writes its bytes
and the graph runtimes (onnxruntime, OpenVINO) time them, so what is measured
is what ships.
"""
from __future__ import annotations

import io
import tempfile
import warnings
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fusionnas.errors import UserError
from fusionnas.evaluators.training import eval_mode

__all__ = ["ONNX_OPSET", "ONNX_TOLERANCE", "CHECKED_BATCHES", "ONNX_FORMS", "ONNX_FILES", "to_onnx", "simplify", "onnx_error",
           "input_batch", "node_count"]

ONNX_OPSET = 17
ONNX_TOLERANCE = 1e-4  # relative to the largest |logit|: the operators' export forms must match this
CHECKED_BATCHES = (1, 4)  # a dynamic-batch graph is checked at each: one image, and several folded together
_BATCH_AXIS = "batch"  # the symbolic batch dimension of a dynamic-batch graph
# standard: ONNX operators only, for any runtime; native: the transforms as fusionnas-domain nodes (OpenVINO
# with the fusionnas extension; see fusionnas.kernels.onnx_nodes)
ONNX_FORMS = ("standard", "native")
ONNX_FILES = {"standard": "model.onnx", "native": "model.native.onnx"}  # the file `fusionnas export` writes per form


def to_onnx(model: nn.Module, input_shape: Sequence[int], *, batch_size: int = 1,
            dynamic_batch: bool = False, form: str = "standard") -> bytes:
    """``model`` in eval mode as an ONNX graph (opset :data:`ONNX_OPSET`, input ``input``, output ``logits``).

    Exported at ``batch_size`` through the TorchScript exporter, which traces
    each operator's export form (``export_forward``, batch norms folded in)
    or its reference form, then simplified by onnxruntime's basic offline
    optimisation (:func:`simplify`). With ``dynamic_batch`` the batch is the
    symbol ``batch`` instead: one graph runs any batch (traced at ``batch_size``).
    ``form="native"`` writes each WHT, butterfly and Hadamard transform as one
    node of the ``fusionnas`` domain (its batch norm and ReLU6 folded in), which
    OpenVINO runs with the fusionnas extension and onnxruntime cannot; it is
    not simplified (onnxruntime cannot load it), its parameters are initializers.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if form not in ONNX_FORMS:
        raise UserError(f"unknown ONNX form {form!r}; known: {', '.join(ONNX_FORMS)}")
    nodes = None
    if form == "native":
        from fusionnas.kernels import onnx_nodes as nodes
    x = torch.zeros((batch_size, *(int(d) for d in input_shape[-3:])))
    axes = {"input": {0: _BATCH_AXIS}, "logits": {0: _BATCH_AXIS}} if dynamic_batch else None
    buffer = io.BytesIO()
    with eval_mode(model), warnings.catch_warnings(), nodes.native_form() if nodes else nullcontext():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
        torch.onnx.export(model, (x,), buffer, opset_version=ONNX_OPSET, dynamo=False, input_names=["input"],
                          output_names=["logits"], dynamic_axes=axes)
    return nodes.finish_graph(buffer.getvalue()) if nodes else simplify(buffer.getvalue())


def simplify(graph: bytes) -> bytes:
    """``graph`` after onnxruntime's basic graph optimisations, saved offline.

    Constant folding (the operators' matrices, computed from their parameters
    in the traced forward, become initializers), redundant-node elimination
    and conv + batch norm fusion. Unlike the extended and layout levels, the
    basic level writes plain ONNX operators that any runtime loads.
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
    with tempfile.TemporaryDirectory() as folder:
        options.optimized_model_filepath = str(Path(folder) / "model.onnx")
        onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        return Path(options.optimized_model_filepath).read_bytes()


def onnx_error(graph: bytes, model: nn.Module, input_shape: Sequence[int], *, seed: int = 0,
               batches: int = 2) -> tuple[float, float]:
    """(largest |onnxruntime - torch|, the allowed bound) over ``batches`` random inputs per batch size.

    The graph's own batch size, or each of :data:`CHECKED_BATCHES` when its
    batch is dynamic. The bound is :data:`ONNX_TOLERANCE` times ``1 + max |logit|``.
    A graph of the native form runs in OpenVINO with the fusionnas extension instead.
    """
    run = _graph_runner(graph)
    batch = input_batch(graph)
    sizes = CHECKED_BATCHES if batch is None else (batch,)
    generator = torch.Generator().manual_seed(seed)
    error, bound = 0.0, 0.0
    with eval_mode(model):
        for size in [size for size in sizes for _ in range(batches)]:
            x = torch.randn((size, *(int(d) for d in input_shape[-3:])), generator=generator)
            got = run(x.numpy())
            with torch.no_grad():
                expected = model(x).numpy()
            error = max(error, float(np.max(np.abs(got - expected))))
            bound = max(bound, ONNX_TOLERANCE * (1 + float(np.max(np.abs(expected)))))
    return error, bound


def _graph_runner(graph: bytes) -> Callable[[np.ndarray], np.ndarray]:
    """The graph's output on an input batch: in onnxruntime, or for the native form in OpenVINO, 1 thread."""
    from fusionnas.kernels.onnx_nodes import has_native_nodes

    if has_native_nodes(graph):
        from fusionnas.evaluators.sessions import openvino_model

        compiled = openvino_model(graph, threads=1)
        return lambda x: compiled(x)[0]
    import onnxruntime

    session = onnxruntime.InferenceSession(graph, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"input": x})[0]


def input_batch(graph: bytes) -> int | None:
    """The batch size the graph's input is fixed to; None when the batch is dynamic."""
    import onnx

    dim = onnx.load_from_string(graph).graph.input[0].type.tensor_type.shape.dim[0]
    return dim.dim_value if dim.HasField("dim_value") else None


def node_count(graph: bytes) -> int:
    """How many nodes the ONNX graph has (its main graph, as onnxruntime loads it)."""
    import onnx

    return len(onnx.load_from_string(graph).graph.node)
