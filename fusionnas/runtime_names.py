"""The runtimes a latency is measured in, and which one each device deploys to by default.

Kept free of heavy imports: study files are checked against these names
before torch is loaded.
"""
from __future__ import annotations

__all__ = ["RUNTIMES", "default_runtime"]

RUNTIMES = ("torch", "onnxruntime")


def default_runtime(device: str) -> str:
    """``torch`` on ``cuda``; ``onnxruntime`` elsewhere, the runtime an exported model runs in on a CPU.

    The Jetson Nano estimate scales parts measured here in onnxruntime, so it
    defaults to onnxruntime too.
    """
    return "torch" if device == "cuda" else "onnxruntime"
