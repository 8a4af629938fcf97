import copy
import math

import numpy as np
import pytest
import scipy.linalg
import torch

from fusionnas.evaluators import count_flops, count_params
from fusionnas.layers import HadamardDepthwise, WHT2d, WHTPointwise

# Every test runs on the native kernels and on the reference forms (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("kernel_path")


def _randomise(layer):
    with torch.no_grad():
        layer.scale.uniform_(0.5, 1.5)
        layer.smooth.threshold.uniform_(-0.3, 0.3)
    return layer


def _smooth(u, t):
    return np.tanh(u) * np.maximum(np.abs(u) - np.abs(t), 0)


def _assert_reference_gradients(layer, x, weight):
    """The layer's own forward has the gradients (input, scale, thresholds) of its reference form."""
    grads = []
    for forward in (layer, layer._forward_reference):
        xi = x.clone().requires_grad_()
        layer.zero_grad()
        (forward(xi) * weight).sum().backward()
        grads.append([xi.grad, layer.scale.grad.clone(), layer.smooth.threshold.grad.clone()])
    for fast, reference in zip(*grads):
        torch.testing.assert_close(fast, reference, rtol=1e-9, atol=1e-10)


def _reference_pointwise(x, layer):
    """numpy: pad channels, orthonormal block WHT, scale, threshold, inverse, crop."""
    n_img, c_in, h, w = x.shape
    m, b = layer.blocks, layer.block
    hb = scipy.linalg.hadamard(b) / math.sqrt(b)
    xp = np.zeros((n_img, m * b, h * w))
    xp[:, :c_in] = x.reshape(n_img, c_in, h * w)
    z = np.einsum("ij,nmjp->nmip", hb, xp.reshape(n_img, m, b, h * w))
    scale = layer.scale.detach().numpy()
    t = layer.smooth.threshold.detach().numpy()
    y = np.einsum("ij,nmjp->nmip", hb, _smooth(z * scale, t))
    return y.reshape(n_img, m * b, h, w)[:, : layer.out_channels]


@pytest.mark.parametrize(
    "c_in,c_out,block",
    [(24, 144, None), (160, 96, None), (16, 16, None), (3, 7, None), (1, 1, None),
     (320, 1280, None), (1024, 1024, None), (96, 40, 32), (24, 144, 16)],
)
def test_pointwise_matches_numpy_reference_in_both_paths(c_in, c_out, block):
    layer = _randomise(WHTPointwise(c_in, c_out, block=block).double())
    x = torch.randn(2, c_in, 3, 5, dtype=torch.float64)
    expected = _reference_pointwise(x.numpy(), layer)
    np.testing.assert_allclose(layer(x).detach().numpy(), expected, atol=1e-10)  # autograd path
    with torch.no_grad():  # inference fast path
        np.testing.assert_allclose(layer(x).numpy(), expected, atol=1e-10)


@pytest.mark.parametrize("c_in,c_out", [(24, 144), (160, 96), (3, 7), (320, 1280), (64, 64)])
def test_pointwise_training_form_has_the_reference_gradients(c_in, c_out):
    """With autograd the layer runs its factored export form; its gradients are the reference's."""
    layer = _randomise(WHTPointwise(c_in, c_out).double())
    x = torch.randn(2, c_in, 3, 5, dtype=torch.float64)
    weight = torch.randn(2, c_out, 3, 5, dtype=torch.float64)
    _assert_reference_gradients(layer, x, weight)


def test_inference_path_in_float32_with_many_chunks(monkeypatch):
    import fusionnas.layers.wht as wht

    monkeypatch.setattr(wht, "_CHUNK_BYTES", 1)  # one image per chunk
    layer = _randomise(WHTPointwise(40, 72)).eval()
    x = torch.randn(5, 40, 6, 6)
    with torch.no_grad():
        fast = layer(x)
    torch.testing.assert_close(fast, layer._forward_reference(x), rtol=1e-5, atol=1e-5)


def test_pointwise_parameters_are_2n():
    assert count_params(WHTPointwise(24, 144)) == 2 * 256
    assert count_params(WHTPointwise(96, 40, block=32)) == 2 * 96


def test_expanded_outputs_are_not_copies():
    layer = WHTPointwise(8, 32)
    y = layer(torch.randn(1, 8, 4, 4)).detach()
    assert not torch.allclose(y[:, :8], y[:, 8:16])


@pytest.mark.parametrize("c_in,c_out,block", [(24, 144, None), (1024, 1024, None), (96, 40, 32)])
def test_pointwise_flops_equal_formula(c_in, c_out, block):
    layer = WHTPointwise(c_in, c_out, block=block)
    n_img, h, w = 2, 8, 6
    n, b = layer.n, layer.block
    pixels = n_img * h * w
    # two n log2 b transforms, scale (n), smooth threshold (5n), output scaling;
    # once per call: the scale and |T| vectors (2n).
    expected = pixels * (2 * n * int(math.log2(b)) + 6 * n + c_out) + 2 * n
    assert count_flops(layer, (n_img, c_in, h, w)) == expected


def test_pointwise_flops_are_far_below_the_conv_at_the_seed_width():
    conv = count_flops(torch.nn.Conv2d(1024, 1024, 1, bias=False), (1, 1024, 8, 8))
    assert count_flops(WHTPointwise(1024, 1024), (1, 1024, 8, 8)) < conv / 20


def _reference_2d(x, layer):
    n_img, c, h, w = x.shape
    th, tw = layer.tile
    ph, pw = -(-h // th) * th, -(-w // tw) * tw
    xp = np.zeros((n_img, c, ph, pw))
    xp[:, :, :h, :w] = x
    tiles = xp.reshape(n_img, c, ph // th, th, pw // tw, tw)
    hh, hw = scipy.linalg.hadamard(th) / math.sqrt(th), scipy.linalg.hadamard(tw) / math.sqrt(tw)
    z = np.einsum("ai,bj,ncpiqj->ncpaqb", hh, hw, tiles)
    scale = layer.scale.detach().numpy()
    t = layer.smooth.threshold.detach().numpy()
    y = np.einsum("ai,bj,ncpiqj->ncpaqb", hh, hw, _smooth(z * scale, t)).reshape(n_img, c, ph, pw)
    if layer.stride == 2:
        y = y.reshape(n_img, c, ph // 2, 2, pw // 2, 2).mean(axis=(3, 5))
    return y[:, :, : -(-h // layer.stride), : -(-w // layer.stride)]


@pytest.mark.parametrize("size,stride,shared,hw", [
    (8, 1, True, (8, 8)), (8, 2, True, (8, 8)), ((4, 8), 1, True, (6, 10)),
    (4, 1, False, (7, 9)), (4, 2, False, (8, 12)), (32, 1, True, (32, 32)),
    # maps no larger than a tile (the late stages): the dense form crops the basis instead of padding
    (8, 1, False, (2, 2)), (8, 2, False, (1, 1)), (4, 2, False, (3, 5)), (4, 1, False, (1, 1)),
    ((4, 8), 2, True, (3, 12)),
])
def test_wht2d_matches_numpy_reference(size, stride, shared, hw):
    layer = _randomise(WHT2d(3, size, stride=stride, shared=shared).double())
    x = torch.randn(2, 3, *hw, dtype=torch.float64)
    expected = _reference_2d(x.numpy(), layer)
    np.testing.assert_allclose(layer(x).detach().numpy(), expected, atol=1e-10)  # autograd: dense form
    with torch.no_grad():  # the dense form's in-place inference thresholding
        np.testing.assert_allclose(layer(x).numpy(), expected, atol=1e-10)
        single = copy.deepcopy(layer).float()
        np.testing.assert_allclose(single(x.float()).numpy(), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layer._forward_reference(x).detach().numpy(), expected, atol=1e-10)


@pytest.mark.parametrize("size,stride,hw", [(4, 1, (16, 16)), (4, 2, (7, 9)), (8, 1, (2, 2)), (8, 2, (1, 1))])
def test_wht2d_dense_form_has_the_reference_gradients(size, stride, hw):
    layer = _randomise(HadamardDepthwise(5, stride=stride, block=size).double())
    x = torch.randn(2, 5, *hw, dtype=torch.float64)
    weight = torch.randn_like(layer._forward_reference(x))
    _assert_reference_gradients(layer, x, weight)


def test_wht2d_flops_equal_formula():
    layer = WHT2d(4, 8, stride=2)
    n_img, c, h, w = 2, 4, 16, 8
    elems = n_img * c * h * w
    transforms = 2 * elems * (3 + 3)
    # scale, threshold (5), normalisation per element; pooling reads each element once;
    # once per call: scale*norm and |T| over the 8x8 parameters.
    expected = transforms + 7 * elems + elems + 2 * 64
    assert count_flops(layer, (n_img, c, h, w)) == expected


def test_hadamard_depthwise_is_per_channel_and_strided():
    layer = HadamardDepthwise(16, stride=2)
    assert count_params(layer) == 2 * 16 * 4 * 4
    assert layer(torch.randn(2, 16, 15, 15)).shape == (2, 16, 8, 8)
    # channels do not mix: zeroing channel 0 of the input changes only channel 0 of the output
    x = torch.randn(1, 16, 8, 8)
    x0 = x.clone()
    x0[:, 0] = 0
    diff = (layer(x) - layer(x0)).detach().abs().amax(dim=(0, 2, 3))
    assert diff[0] > 0 and torch.all(diff[1:] == 0)


def test_bad_options_are_rejected():
    with pytest.raises(ValueError, match="block must be a power of two, got 24; try 32"):
        WHTPointwise(24, 48, block=24)
    with pytest.raises(ValueError, match="stride must be 1 or 2, got 3"):
        HadamardDepthwise(8, stride=3)
    with pytest.raises(ValueError, match="in_channels must be a positive integer, got 0"):
        WHTPointwise(0, 8)
