"""The runtimes a latency is measured in, where each can run, and which one each device deploys to by default.

Kept free of heavy imports: study files are checked against these names
before torch is loaded.
"""
from __future__ import annotations

from fusionnas.errors import UserError

__all__ = ["RUNTIMES", "RUNTIME_DEVICES", "check_runtime_device", "default_runtime"]

# openvino-native: OpenVINO on the native export form, each transform one kernel of the fusionnas extension.
RUNTIMES = ("torch", "onnxruntime", "openvino", "openvino-native")

# Where each runtime times a model here; OpenVINO's GPU plugin drives Intel GPUs only, so it runs on the CPU.
RUNTIME_DEVICES = {"torch": ("cpu", "cuda"), "onnxruntime": ("cpu", "cuda"), "openvino": ("cpu",),
                   "openvino-native": ("cpu",)}


def default_runtime(device: str) -> str:
    """``torch`` on ``cuda``; ``onnxruntime`` elsewhere, the runtime an exported model runs in on a CPU.

    The Jetson Nano estimate scales parts measured here in onnxruntime, so it
    defaults to onnxruntime too.
    """
    return "torch" if device == "cuda" else "onnxruntime"


def check_runtime_device(runtime: str, device: str) -> None:
    """A one-line user error when ``runtime`` cannot time a model on ``device`` (``cpu`` or ``cuda``)."""
    devices = RUNTIME_DEVICES.get(runtime, ())
    if device in ("cpu", "cuda") and device not in devices:
        others = [r for r, where in RUNTIME_DEVICES.items() if device in where]
        raise UserError(f"runtime {runtime} runs on the {' or '.join(devices)} only, got device {device!r}",
                        f"use device {devices[0]}, or runtime {' or '.join(others)} on {device}")
