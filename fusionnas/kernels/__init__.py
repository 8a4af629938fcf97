"""Native fused kernels for the transform operators, with torch and OpenVINO bindings.

One C/C++ source (``csrc/``) built for this machine at install
(``python -m fusionnas.kernels.build``); the torch custom operators
(:mod:`fusionnas.kernels.torch_ops`) load it with ctypes, the OpenVINO
extension links it. Without it the layers run their reference forms.
"""
from fusionnas.kernels._native import available, describe, reference_forms, unavailable_reason
from fusionnas.kernels.onnx_nodes import OPENVINO_EXTENSION


def openvino_extension_available() -> bool:
    """Whether the OpenVINO extension (the native export form's kernels) was built."""
    return OPENVINO_EXTENSION.exists()


__all__ = ["available", "describe", "openvino_extension_available", "reference_forms", "unavailable_reason"]
