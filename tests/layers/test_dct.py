import math
import warnings

import numpy as np
import pytest
import scipy.fft
import torch
from torch import nn

from _onnx import assert_onnx_matches
from fusionnas.evaluators import count_flops
from fusionnas.layers.dct import DCTPointwise, dct_matrix, frequency_regularizer
from fusionnas.layers.registry import create_fusion


def _layer(c_in, c_out, thresholds=None, **options):
    layer = DCTPointwise(c_in, c_out, **options).double()
    if thresholds is not None:
        with torch.no_grad():
            layer.threshold.copy_(torch.tensor(thresholds, dtype=torch.float64))
    return layer


def _reference(x, layer):
    """numpy/scipy: 2-D DCT, keep u < ceil(t H), v < ceil(t W) per input channel, 1x1 conv, inverse."""
    n, c_in, h, w = x.shape
    z = scipy.fft.dctn(x, axes=(2, 3), norm="ortho")
    mask = np.zeros((c_in, h, w))
    for c, t in enumerate(layer.threshold.detach().numpy()):
        k_h = min(max(math.ceil(t * h), 1), h)
        k_w = min(max(math.ceil(t * w), 1), w)
        mask[c, :k_h, :k_w] = 1
    weight = layer.weight.detach().numpy()[:, :, 0, 0]
    y = scipy.fft.idctn(np.einsum("oc,nchw->nohw", weight, z * mask), axes=(2, 3), norm="ortho")
    if layer.bias is not None:
        y = y + layer.bias.detach().numpy()[:, None, None]
    return y


@pytest.mark.parametrize("n", [1, 2, 5, 8, 32, 56])
def test_dct_matrix_matches_scipy(n):
    x = np.random.default_rng(n).standard_normal((n, 3))
    d = dct_matrix(n, dtype=torch.float64)
    np.testing.assert_allclose(d.numpy() @ x, scipy.fft.dct(x, type=2, norm="ortho", axis=0), atol=1e-12)
    np.testing.assert_allclose(d.numpy() @ d.numpy().T, np.eye(n), atol=1e-12)
    assert dct_matrix(n, dtype=torch.float64) is d  # cached


def test_2d_transform_matches_scipy_dctn():
    x = np.random.default_rng(0).standard_normal((7, 5))
    dh, dw = dct_matrix(7, torch.float64).numpy(), dct_matrix(5, torch.float64).numpy()
    np.testing.assert_allclose(dh @ x @ dw.T, scipy.fft.dctn(x, norm="ortho"), atol=1e-12)


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("dense_fallback", [False, True])
def test_everything_kept_equals_the_conv_in_train_and_eval(bias, dense_fallback):
    conv = nn.Conv2d(6, 10, 1, bias=bias).double()
    layer = _layer(6, 10, bias=bias, dense_fallback=dense_fallback)
    layer.load_state_dict(conv.state_dict(), strict=False)  # a conv's weights load as they are
    x = torch.randn(2, 6, 7, 5, dtype=torch.float64)
    expected = conv(x)
    torch.testing.assert_close(layer.eval()(x), expected, atol=1e-10, rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), expected, atol=1e-10, rtol=0)
        layer.threshold.fill_(40.0)  # soft masks saturate to 1 far above the last frequency
    torch.testing.assert_close(layer.train()(x), expected, atol=1e-10, rtol=0)


@pytest.mark.parametrize("shape", [(2, 6, 8, 8), (3, 6, 9, 5), (1, 6, 4, 11)])
@pytest.mark.parametrize("bias", [False, True])
def test_eval_bands_match_scipy_reference(shape, bias, monkeypatch):
    layer = _layer(6, 10, [0.6, 0.3, 0.5, 0.3, 0.01, 0.7], bias=bias, dense_fallback=False).eval()
    x = torch.randn(shape, dtype=torch.float64)
    expected = _reference(x.numpy(), layer)
    np.testing.assert_allclose(layer(x).detach().numpy(), expected, atol=1e-10)  # traceable path
    with torch.no_grad():  # inference path
        np.testing.assert_allclose(layer(x).numpy(), expected, atol=1e-10)
    import fusionnas.layers.dct as dct

    monkeypatch.setattr(dct, "_CHUNK_BYTES", 1)  # one image per chunk
    with torch.no_grad():
        np.testing.assert_allclose(layer(x).numpy(), expected, atol=1e-10)


def test_pruned_layer_runs_the_dct_path_by_default_and_float32_matches():
    layer = DCTPointwise(64, 48).eval()
    layer.set_kept_fraction(1 / 16)
    x = torch.randn(2, 64, 16, 16)
    with torch.no_grad():
        y = layer(x)
    assert layer.flops(16, 16) < 64 * 48 * 16 * 16
    double = _layer(64, 48).eval()
    double.load_state_dict(layer.state_dict())
    np.testing.assert_allclose(y.numpy(), _reference(x.double().numpy(), double), atol=1e-4)


def test_soft_masks_give_gradients_to_thresholds_and_weights():
    layer = _layer(4, 6, [0.5, 0.3, 0.8, 1.0], bias=True).train()
    layer(torch.randn(2, 4, 6, 5, dtype=torch.float64)).square().sum().backward()
    for name in ("weight", "threshold", "bias"):
        grad = getattr(layer, name).grad
        assert grad is not None and grad.abs().min() > 0, name


def test_soft_mask_is_the_hard_mask_in_the_cold_limit():
    layer = _layer(3, 2, [0.45, 0.3, 0.8], tau=1e-3)  # no t H or t W on an integer
    soft = layer.soft_mask((8, 6))
    hard = torch.zeros(3, 8, 6, dtype=torch.float64)
    for c, (k_h, k_w) in enumerate(layer.kept_bands((8, 6))):
        hard[c, :k_h, :k_w] = 1
    torch.testing.assert_close(soft, hard, atol=1e-6, rtol=0)


def test_frequency_regularizer_sums_layers_and_falls_with_thresholds():
    first, second = _layer(4, 6, [1.0, 0.5, 0.7, 0.2]), _layer(6, 3)
    model = nn.Sequential(first, nn.ReLU(), second)
    model(torch.randn(1, 4, 8, 8, dtype=torch.float64))
    reg = frequency_regularizer(model)
    assert reg.dim() == 0
    torch.testing.assert_close(reg, first.penalty() + second.penalty())
    with torch.no_grad():
        first.threshold.mul_(0.5)
    lower = frequency_regularizer(model)
    assert lower < reg
    lower.backward()
    assert first.threshold.grad is not None and (first.threshold.grad > 0).all()
    assert frequency_regularizer(nn.Linear(2, 2)).item() == 0.0


def test_penalty_needs_a_map_size():
    layer = DCTPointwise(3, 4)
    with pytest.raises(RuntimeError, match="input_size"):
        layer.penalty()
    assert 0 < DCTPointwise(3, 4, input_size=(8, 6)).penalty().item() <= 1


def test_kept_fraction_and_bands_match_hand_count():
    layer = _layer(4, 2, [1.0, 0.5, 0.2, 0.0])
    layer.eval()(torch.randn(1, 4, 10, 6, dtype=torch.float64))
    # ceil(t * 10), ceil(t * 6), clamped to [1, side]
    assert layer.kept_bands() == [(10, 6), (5, 3), (2, 2), (1, 1)]
    assert layer.kept_fraction == pytest.approx((60 + 15 + 4 + 1) / (4 * 60))
    layer.set_kept_fraction(0.25)
    assert layer.kept_bands((8, 8)) == [(4, 4)] * 4
    with pytest.raises(ValueError, match="fraction must be in"):
        layer.set_kept_fraction(0.0)


def test_gradcheck_float64_in_training_mode():
    layer = _layer(3, 2, [0.6, 0.3, 0.9], bias=True).train()
    names = [n for n, _ in layer.named_parameters()]
    x = torch.randn(1, 3, 3, 4, dtype=torch.float64, requires_grad=True)

    def fn(inp, *params):
        with torch.nn.utils.stateless._reparametrize_module(layer, dict(zip(names, params))):
            return layer(inp)

    assert torch.autograd.gradcheck(fn, (x, *layer.parameters()), atol=1e-6)


def test_flops_equal_the_documented_formula():
    n, c_in, c_out, h, w = 2, 8, 12, 8, 6
    shape = (n, c_in, h, w)
    # channels 0-3 keep the whole (8, 6) map; 4-5 keep (4, 3); 6-7 keep (ceil(2), ceil(1.5)) = (2, 2)
    pruned = DCTPointwise(c_in, c_out, dense_fallback=False)
    with torch.no_grad():
        pruned.threshold.copy_(torch.tensor([1.0] * 4 + [0.5] * 2 + [0.25] * 2))
    forward = 4 * h * 6 * (w + 8) + 2 * h * 3 * (w + 4) + 2 * h * 2 * (w + 2)  # C_b H k_w (W + k_h)
    product = c_out * (4 * 8 * 6 + 2 * 4 * 3 + 2 * 2 * 2)  # C_out C_b k_h k_w
    accumulate = c_out * (4 * 3 + 2 * 2)  # the two smaller bands
    inverse = c_out * 6 * h * (8 + w)  # C_out K_w H (K_h + W)
    full = DCTPointwise(c_in, c_out, dense_fallback=False)
    full_formula = c_in * h * w * (w + h) + c_out * c_in * h * w + c_out * w * h * (h + w)
    conv = c_out * c_in * h * w
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # an uncounted op would warn
        assert count_flops(pruned, shape) == n * (forward + product + accumulate + inverse)
        assert count_flops(full, shape) == n * full_formula
        assert count_flops(DCTPointwise(c_in, c_out), shape) == n * conv  # dense fallback
    assert pruned.flops(h, w) == forward + product + accumulate + inverse
    # With 8 -> 12 channels even the pruned transforms cost more than the conv itself.
    assert n * conv < count_flops(pruned, shape) < count_flops(full, shape)


def test_flops_with_bias_and_fallback_choice():
    layer = DCTPointwise(64, 64, bias=True)
    layer.set_kept_fraction(1 / 16)  # every channel keeps (4, 4) of 16 x 16
    per_image = 64 * 16 * 4 * (16 + 4) + 64 * 64 * 16 + 64 * 4 * 16 * (4 + 16) + 64
    assert count_flops(layer, (3, 64, 16, 16)) == 3 * per_image < 3 * 64 * 64 * 16 * 16


def test_onnx_export_matches_torch():
    layer = DCTPointwise(6, 10, bias=True, dense_fallback=False).eval()
    with torch.no_grad():
        layer.threshold.copy_(torch.tensor([0.6, 0.3, 0.5, 0.3, 0.01, 1.0]))
    x = torch.randn(2, 6, 7, 9)
    assert_onnx_matches(layer, x)


def test_wrong_channel_count_names_both_counts():
    layer = create_fusion("dct", 6, 10)
    assert isinstance(layer, DCTPointwise)
    for mode in (layer.train, layer.eval):
        mode()
        with pytest.raises(ValueError, match="expects 6 input channels, got 5"):
            layer(torch.randn(1, 5, 4, 4))


def test_bad_options_raise():
    with pytest.raises(ValueError, match="tau must be > 0"):
        DCTPointwise(3, 4, tau=0.0)
    with pytest.raises(ValueError, match="in_channels must be a positive integer"):
        DCTPointwise(0, 4)


def test_eval_plan_follows_threshold_updates():
    """The cached band plan must not outlive a change of the thresholds."""
    layer = _layer(8, 8).eval()
    x = torch.randn(2, 8, 8, 8, dtype=torch.float64)
    layer(x)
    full = layer.kept_fraction
    layer.set_kept_fraction(0.25)
    y = layer(x)
    assert layer.kept_fraction < full
    layer.load_state_dict(_layer(8, 8).state_dict())  # thresholds back to 1.0, in place
    torch.testing.assert_close(layer(x), torch.nn.functional.conv2d(x, layer.weight))
    assert not torch.allclose(y, layer(x))
