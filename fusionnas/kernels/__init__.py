"""Native fused kernels for the transform operators, with torch and OpenVINO bindings.

One C/C++ source (``csrc/``) built for this machine at install
(``python -m fusionnas.kernels.build``); the torch custom operators
(:mod:`fusionnas.kernels.torch_ops`) load it with ctypes, the OpenVINO
extension links it. Without it the layers run their reference forms.
"""
from fusionnas.kernels._native import available, describe, reference_forms, unavailable_reason

__all__ = ["available", "describe", "reference_forms", "unavailable_reason"]
