"""The runtimes tests run a model in: openvino-native only where the fusionnas extension is built.

Without a compiler the package installs and runs on the reference forms; a runtime whose kernels
are missing is then skipped with the reason, never failed.
"""
from __future__ import annotations

from collections.abc import Iterable

import pytest

from fusionnas.evaluators.runtimes import RUNTIMES
from fusionnas.kernels import openvino_extension_available

_NEEDS_EXTENSION = pytest.mark.skipif(
    not openvino_extension_available(),
    reason="openvino-native needs the fusionnas OpenVINO extension (python -m fusionnas.kernels.build)")


def runtime_params(runtimes: Iterable[str] = RUNTIMES) -> list:
    """``runtimes`` as pytest parameters, openvino-native skipped where its extension is not built."""
    return [pytest.param(r, marks=_NEEDS_EXTENSION) if r == "openvino-native" else r for r in runtimes]


GRAPH_RUNTIMES = runtime_params(r for r in RUNTIMES if r != "torch")
