"""Shared check: a module exported to ONNX runs in onnxruntime and matches torch."""
import io
import warnings

import numpy as np
import onnxruntime
import torch


def assert_onnx_matches(module: torch.nn.Module, x: torch.Tensor, tol: float = 1e-4) -> None:
    """Export ``module`` (eval mode, opset 17, TorchScript exporter) and compare on ``x``."""
    module.eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), buffer, opset_version=17, dynamo=False,
                          input_names=["x"], output_names=["y"])
    session = onnxruntime.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"x": x.numpy()})
    with torch.no_grad():
        expected = module(x).numpy()
    np.testing.assert_allclose(got, expected, atol=tol, rtol=tol)


def run_graph(graph: bytes, runtime: str, x: np.ndarray) -> np.ndarray:
    """The first output of ``graph`` on ``x`` in a graph runtime (``onnxruntime`` or ``openvino``), CPU, 1 thread."""
    from fusionnas.evaluators.runtimes import onnxruntime_session, openvino_model

    if runtime == "onnxruntime":
        return onnxruntime_session(graph, "cpu", threads=1).run(None, {"input": x})[0]
    return openvino_model(graph, "cpu", threads=1)(x)[0]
