"""fwht against FFHT (the `bench` extra's reference), and benchmarks/fwht.py on tiny sizes."""
from pathlib import Path

import numpy as np
import pytest
import torch

from fusionnas.layers import fwht

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ffht():
    return pytest.importorskip("ffht", reason="FFHT is the optional `bench` extra (make bench installs it)")


@pytest.mark.parametrize("n", [2**k for k in range(1, 13)])
def test_fwht_equals_ffht(ffht, n):
    # In place: FFHT's out-of-place fht() copies nothing below 32 bytes (n <= 4 in float32).
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    expected = x.copy()
    ffht.fht_(expected)
    np.testing.assert_allclose(fwht(torch.from_numpy(x)).numpy(), expected, rtol=1e-5, atol=1e-5 * n**0.5)


@pytest.mark.parametrize("n", [8, 128, 4096])
def test_fwht_equals_ffht_over_rows(ffht, n):
    """The whole-buffer call the benchmark times: every row of a 2-D array, on 2 threads."""
    x = torch.randn(33, n)
    expected = x.numpy().copy()
    ffht.fht_(expected, 2)
    np.testing.assert_allclose(fwht(x).numpy(), expected, rtol=1e-5, atol=1e-5 * n**0.5)


def test_benchmark_runs_quick_on_tiny_sizes(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(REPO))
    from benchmarks import fwht as bench

    monkeypatch.setattr(bench, "NCHW_SHAPES", [("tiny", (1, 8, 4, 4))])
    bench.main(["--quick", "--threads", "1", "2", "--sizes", "8", "16", "--mb", "0.01"])
    out = capsys.readouterr().out
    assert out.count("\n    8 ") == 2 and out.count("\n   16 ") == 2  # both lengths at both thread counts
    assert out.count("\ntiny ") == 2
