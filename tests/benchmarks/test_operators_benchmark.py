"""benchmarks.operators runs every column on tiny shapes: the figures in the README come from it."""
from __future__ import annotations

import pytest

from benchmarks import operators
from fusionnas import kernels


@pytest.mark.skipif(not (kernels.available() and kernels.openvino_extension_available()),
                    reason="the native kernels and the OpenVINO extension are not built")
def test_every_runtime_column_times_every_operator(monkeypatch) -> None:
    monkeypatch.setattr(operators, "DCT_KEPT", (0.5,))
    rows = operators.operator_table(shapes=[("tiny", (1, 24, 4, 4), 40)], rounds=1, threads=1)
    rows += operators.depthwise_table(shapes=[("tiny", (1, 8, 6, 6), 2)], rounds=1, threads=1)
    assert [row["op"] for row in rows] == ["conv 1x1", "WHTPointwise", "ButterflyPointwise", "DCTPointwise kept 0.50",
                                           "depthwise conv 3x3", "HadamardDepthwise 3x3"]
    for row in rows:
        assert set(operators.RUNTIME_COLUMNS) <= set(row) and all(row[c] > 0 for c in operators.RUNTIME_COLUMNS)


def test_the_training_table_compares_native_and_reference_forms() -> None:
    rows = operators.training_table(shapes=[("tiny", (2, 24, 4, 4), 16)], rounds=1)
    assert {row["op"] for row in rows} >= {"WHTPointwise", "HadamardDepthwise 3x3"}
    assert all(row["ms"] > 0 and row["reference_ms"] > 0 for row in rows)
