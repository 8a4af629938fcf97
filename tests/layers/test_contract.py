"""Contract every operator keeps: shape, channel checks, gradients, FLOP counting, ONNX."""
import warnings

import pytest
import torch

from _onnx import assert_onnx_matches
from fusionnas.evaluators import count_flops
from fusionnas.layers import HadamardDepthwise, WHT2d, create_fusion, list_fusions

# (C_in, C_out) pairs from MobileNetV2 blocks plus awkward ones
CHANNEL_PAIRS = [(24, 144), (160, 96), (16, 16), (3, 7)]


def _fusion_cases():
    for kind in list_fusions():
        for c_in, c_out in CHANNEL_PAIRS:
            yield pytest.param(kind, c_in, c_out, id=f"{kind}-{c_in}-{c_out}")


def _spatial_cases():
    yield pytest.param(lambda c: WHT2d(c, 8), id="wht2d")
    yield pytest.param(lambda c: WHT2d(c, 4, stride=2, shared=False), id="wht2d-s2")
    yield pytest.param(lambda c: HadamardDepthwise(c, stride=1), id="hadamard-dw")
    yield pytest.param(lambda c: HadamardDepthwise(c, stride=2), id="hadamard-dw-s2")


def _make(kind, c_in, c_out):
    return create_fusion(kind, c_in, c_out)


def test_the_four_fusions_are_registered():
    assert {"conv", "wht", "dct", "bft"} <= set(list_fusions())


def test_unknown_fusion_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown fusion operator 'fft9'; known: .*bft.*conv"):
        create_fusion("fft9", 8, 8)


@pytest.mark.parametrize("kind,c_in,c_out", list(_fusion_cases()))
def test_fusion_shape_and_gradients(kind, c_in, c_out):
    layer = _make(kind, c_in, c_out)
    x = torch.randn(2, c_in, 6, 5, requires_grad=True)
    y = layer(x)
    assert y.shape == (2, c_out, 6, 5)
    y.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for name, p in layer.named_parameters():
        assert p.grad is not None, f"{kind}: parameter {name} got no gradient"


@pytest.mark.parametrize("kind,c_in,c_out", list(_fusion_cases()))
def test_fusion_rejects_wrong_channel_count(kind, c_in, c_out):
    layer = _make(kind, c_in, c_out)
    with pytest.raises(ValueError, match=rf"expects {c_in} input channels, got {c_in + 1}"):
        layer(torch.randn(1, c_in + 1, 4, 4))


@pytest.mark.parametrize("make", list(_spatial_cases()))
def test_spatial_shape_gradients_and_channel_check(make):
    layer = make(6)
    x = torch.randn(2, 6, 9, 8, requires_grad=True)
    y = layer(x)
    stride = layer.stride
    assert y.shape == (2, 6, -(-9 // stride), -(-8 // stride))
    y.square().sum().backward()
    assert all(p.grad is not None for p in layer.parameters())
    with pytest.raises(ValueError, match="expects 6 input channels, got 5"):
        layer(torch.randn(1, 5, 8, 8))


def _gradcheck_model(layer):
    layer = layer.double()
    with torch.no_grad():
        for name, p in layer.named_parameters():
            if "threshold" not in name:
                p.add_(0.1 * torch.randn_like(p))
    return layer


@pytest.mark.parametrize("kind", ["wht", "dct", "bft"])
def test_fusion_gradcheck_float64(kind):
    layer = _gradcheck_model(create_fusion(kind, 6, 10)).train()
    x = torch.randn(1, 6, 4, 4, dtype=torch.float64, requires_grad=True)
    params = [p for p in layer.parameters()]

    def fn(inp, *ps):
        with torch.nn.utils.stateless._reparametrize_module(
            layer, dict(zip([n for n, _ in layer.named_parameters()], ps))
        ):
            return layer(inp)

    assert torch.autograd.gradcheck(fn, (x, *params), atol=1e-6)


@pytest.mark.parametrize("make", list(_spatial_cases()))
def test_spatial_gradcheck_float64(make):
    layer = _gradcheck_model(make(2))
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,), atol=1e-6)




@pytest.mark.parametrize("kind,c_in,c_out", list(_fusion_cases()))
def test_fusion_onnx_matches_torch(kind, c_in, c_out):
    assert_onnx_matches(_make(kind, c_in, c_out), torch.randn(2, c_in, 7, 6))


@pytest.mark.parametrize("make", list(_spatial_cases()))
def test_spatial_onnx_matches_torch(make):
    assert_onnx_matches(make(4), torch.randn(2, 4, 9, 8))


@pytest.mark.parametrize("kind,c_in,c_out", list(_fusion_cases()))
def test_fusion_flops_are_counted_without_unsupported_ops(kind, c_in, c_out):
    layer = _make(kind, c_in, c_out)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # an uncounted op would warn
        assert count_flops(layer, (1, c_in, 8, 8)) > 0


@pytest.mark.parametrize("kind", list_fusions())
def test_fusion_eval_under_cpu_autocast_matches_float32(kind):
    """AMP evaluation (as proxy training validates on CUDA) must not break the fast paths."""
    layer = create_fusion(kind, 64, 96).eval()
    if kind == "dct":
        layer.set_kept_fraction(0.25)  # take the DCT path, not the dense fallback
    x = torch.randn(4, 64, 8, 8)
    with torch.no_grad():
        reference = layer(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = layer(x)
    torch.testing.assert_close(y.float(), reference, rtol=0.05, atol=0.05)
