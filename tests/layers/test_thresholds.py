import numpy as np
import pytest
import torch

from fusionnas.layers import SmoothThreshold


def test_formula_matches_numpy_and_threshold_sign_is_ignored():
    layer = SmoothThreshold(4, init=0.5)
    with torch.no_grad():
        layer.threshold.copy_(torch.tensor([0.5, -0.5, 0.0, 2.0]))
    x = torch.tensor([[1.0, -1.0, 0.3, 1.5]])
    t = np.abs(layer.threshold.detach().numpy())
    expected = np.tanh(x.numpy()) * np.maximum(np.abs(x.numpy()) - t, 0)
    np.testing.assert_allclose(layer(x).detach().numpy(), expected, rtol=1e-6)
    assert layer(x)[0, 3] == 0  # below its threshold: zeroed


def test_ramp_init_is_i_over_10n():
    layer = SmoothThreshold((2, 4, 1))
    expected = torch.arange(8.0).reshape(2, 4, 1) / 80
    torch.testing.assert_close(layer.threshold.detach(), expected)


def test_gradients_reach_threshold():
    layer = SmoothThreshold(3, init=0.1).double()
    x = torch.tensor([0.7, -0.9, 1.3], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,))
    layer(x).sum().backward()
    # dy/dT = -tanh(x) sign(T) where |x| > T
    np.testing.assert_allclose(layer.threshold.grad.numpy(), -np.tanh(x.detach().numpy()), rtol=1e-12)


def test_bad_init_is_rejected():
    with pytest.raises(ValueError, match="init must be 'ramp' or a number"):
        SmoothThreshold(3, init="zeros")
