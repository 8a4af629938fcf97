"""An ONNX graph ready to run: an onnxruntime session or an OpenVINO compiled model, set up as deployed.

Both the runtimes that time networks (:mod:`fusionnas.evaluators.runtimes`)
and the export check (:mod:`fusionnas.evaluators.onnx_export`) run graphs
through here, so a graph is checked in the very runtime settings it is timed in.
"""
from __future__ import annotations

import functools
import os

from fusionnas.errors import UserError
from fusionnas.runtime_names import check_runtime_device

__all__ = ["onnxruntime_session", "openvino_model"]


def onnxruntime_session(graph: bytes, device: str = "cpu", threads: int = 1):
    """An onnxruntime session of ``graph`` with all graph optimisations and ``threads`` intra-op threads.

    A graph of the native form (fusionnas-domain nodes) is a user error: only OpenVINO runs it.
    """
    import onnxruntime

    if _has_native_nodes(graph):
        raise UserError("the graph has fusionnas-domain nodes (the native ONNX form), which onnxruntime cannot run; "
                        "export the standard form for onnxruntime (or run this one in openvino)")

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle threads sleep instead of spinning: spinning threads slow whatever runs next in this
    # process or beside it (torch, other workers) on a machine with few cores.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if device == "cuda":
        if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            raise UserError("onnxruntime has no CUDA execution provider here; install onnxruntime-gpu or use "
                            "device cpu")
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    else:
        providers = ["CPUExecutionProvider"]
    return onnxruntime.InferenceSession(graph, options, providers=providers)


@functools.cache
def _openvino_core():
    """One OpenVINO ``Core`` per process: it loads the device plugins."""
    import openvino

    return openvino.Core()


def _has_native_nodes(graph: bytes) -> bool:
    from fusionnas.kernels.onnx_nodes import has_native_nodes

    return has_native_nodes(graph)


@functools.cache
def _openvino_core_with_extension():
    """The OpenVINO ``Core`` with the fusionnas extension added (once: it registers the nodes' converters)."""
    from fusionnas.kernels.onnx_nodes import openvino_extension

    core = _openvino_core()
    core.add_extension(str(openvino_extension()))
    return core


def openvino_model(graph: bytes, device: str = "cpu", threads: int = 1, *, batch_size: int | None = None):
    """``graph`` compiled by OpenVINO for the CPU: ``threads`` inference threads, latency hint, one stream.

    ``batch_size`` fixes a dynamic batch (a compiled static shape is what an
    application deploys, and faster); a graph exported at another batch is a
    user error, as OpenVINO would run it wrongly. Inference is in f32 as
    exported (on a CPU with bf16 units OpenVINO would otherwise compute in
    bf16), and threads are not pinned to cores, like onnxruntime's and torch's,
    so that processes side by side do not share pinned cores. A graph of the
    native form runs its fusionnas-domain nodes with the fusionnas extension
    (a user error where it was not built).
    """
    check_runtime_device("openvino", device)
    import openvino
    import openvino.properties as props
    import openvino.properties.hint as hints

    native = _has_native_nodes(graph)
    core = _openvino_core_with_extension() if native else _openvino_core()
    if native:  # the extension's kernels learn the thread count from here (one process, one count)
        os.environ["FUSIONNAS_THREADS"] = str(threads)
    model = core.read_model(graph)
    shape = model.input(0).get_partial_shape()  # (N, C, H, W), N symbolic in a dynamic-batch export
    if batch_size is not None and shape[0].is_dynamic:
        shape[0] = batch_size
        model.reshape(shape)
    elif batch_size is not None and shape[0].get_length() != batch_size:
        raise UserError(f"the graph was exported at batch {shape[0].get_length()}, asked to run batch {batch_size}; "
                        f"export it at batch {batch_size} or with a dynamic batch")
    config = {props.inference_num_threads: threads, props.num_streams: 1,
              hints.performance_mode: hints.PerformanceMode.LATENCY,
              hints.inference_precision: openvino.Type.f32, hints.enable_cpu_pinning: False}
    return core.compile_model(model, "CPU", config)
