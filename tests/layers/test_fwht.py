import numpy as np
import pytest
import scipy.linalg
import torch

from fusionnas.layers import fwht, hadamard
from fusionnas.layers.fwht import hadamard_factors, next_power_of_two

# Every test runs on the native kernels and on the reference forms (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("kernel_path")


@pytest.mark.parametrize("n", [2**k for k in range(13)])
def test_fwht_equals_scipy_hadamard_last_dim(n):
    x = torch.randn(3, n, dtype=torch.float64)
    expected = x.numpy() @ scipy.linalg.hadamard(n)
    np.testing.assert_allclose(fwht(x).numpy(), expected, rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("n", [1, 2, 8, 64, 128, 1024, 4096])
@pytest.mark.parametrize("dim", [0, 1, 2, -1])
def test_fwht_along_any_dim(n, dim):
    shape = [2, 3, 4]
    shape[dim] = n
    x = torch.randn(*shape, dtype=torch.float64)
    expected = np.moveaxis(np.moveaxis(x.numpy(), dim, -1) @ scipy.linalg.hadamard(n), -1, dim)
    np.testing.assert_allclose(fwht(x, dim).numpy(), expected, rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("n", [2, 4, 8, 16, 256, 1024])
@pytest.mark.parametrize("trail", [1, 2, 4, 16, 256])
def test_fwht_of_the_middle_dim_equals_scipy_for_every_path(n, trail):
    """(L, n, R) shapes reach both implementations: factored GEMMs and the add/sub passes."""
    x = torch.randn(3, n, trail, dtype=torch.float64)
    expected = np.einsum("ij,ljr->lir", scipy.linalg.hadamard(n), x.numpy())
    np.testing.assert_allclose(fwht(x, 1).numpy(), expected, rtol=1e-12, atol=1e-9)


def test_fwht_float32_matches_float64():
    x = torch.randn(5, 1024, 7, dtype=torch.float64)
    np.testing.assert_allclose(fwht(x.float(), 1).numpy(), fwht(x, 1).numpy(), rtol=1e-4, atol=1e-3)
    assert fwht(x.float(), 1).dtype == torch.float32


def test_fwht_of_non_contiguous_input():
    x = torch.randn(16, 8, dtype=torch.float64).t()  # (8, 16), non-contiguous
    expected = x.numpy() @ scipy.linalg.hadamard(16)
    np.testing.assert_allclose(fwht(x).numpy(), expected, atol=1e-12)


@pytest.mark.parametrize("n", [1, 16, 2048])
def test_fwht_twice_is_n_times_identity(n):
    x = torch.randn(4, n, dtype=torch.float64)
    torch.testing.assert_close(fwht(fwht(x)) / n, x)


def test_hadamard_matches_scipy():
    for n in (1, 2, 32, 256):
        np.testing.assert_array_equal(hadamard(n, torch.float64).numpy(), scipy.linalg.hadamard(n))


def test_fwht_gradcheck_and_gradgradcheck():
    x = torch.randn(2, 64, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: fwht(t, 1), (x,))
    assert torch.autograd.gradgradcheck(lambda t: fwht(t, 1), (x,))


def test_factors_are_powers_of_two_and_multiply_to_n():
    for k in range(16):
        parts = hadamard_factors(2**k)
        assert np.prod(parts) == 2**k
        assert all(p & (p - 1) == 0 and p <= 32 for p in parts)


def test_non_power_of_two_length_is_rejected_with_the_fix():
    with pytest.raises(ValueError, match="power-of-two length along dim 1, got 24; zero-pad to 32"):
        fwht(torch.randn(2, 24), dim=1)


def test_integer_input_is_rejected():
    with pytest.raises(TypeError, match="floating-point"):
        fwht(torch.ones(4, dtype=torch.int64))


def test_next_power_of_two():
    assert [next_power_of_two(n) for n in (1, 2, 3, 5, 96, 1024, 1025)] == [1, 2, 4, 8, 128, 1024, 2048]


def test_a_hadamard_matrix_first_built_in_inference_mode_still_serves_autograd() -> None:
    from fusionnas.kernels import reference_forms
    from fusionnas.layers import WHTPointwise
    from fusionnas.layers.fwht import _build_hadamard_cached

    _build_hadamard_cached.cache_clear()  # so that this test's inference-mode call builds the matrices
    layer = WHTPointwise(48, 80)
    with torch.inference_mode():
        hadamard(128)
        layer.eval()(torch.randn(1, 48, 3, 3))
    layer.train()
    with reference_forms():
        layer(torch.randn(2, 48, 3, 3)).sum().backward()
    assert layer.scale.grad is not None
