"""The native kernels against references: scipy's Hadamard matrix and the layers' reference forms."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from fusionnas.kernels import _native
from fusionnas.layers import ButterflyPointwise, WHT2d, WHTPointwise

pytestmark = pytest.mark.skipif(not _native.available(), reason=f"native kernels: {_native.unavailable_reason()}")

if _native.available():
    from fusionnas.kernels import torch_ops as K


def _randomise(layer: torch.nn.Module, seed: int) -> None:
    """Parameters away from their initial values, so every term of the function matters."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in layer.named_parameters():
            noise = torch.randn(p.shape, generator=generator)
            p.copy_(noise * 0.3 if "threshold" in name else noise)


@pytest.mark.parametrize("n", [1, 2, 4, 8, 16, 32, 64, 128, 1024, 4096])
@pytest.mark.parametrize("lead,trail", [(3, 1), (2, 5), (1, 17), (2, 40)])
def test_fwht_equals_scipy_hadamard(n: int, lead: int, trail: int) -> None:
    x = torch.randn(lead, n, trail, generator=torch.Generator().manual_seed(n + trail))
    expected = np.einsum("lnr,nm->lmr", x.double().numpy(), scipy.linalg.hadamard(n))
    got = K.fwht(x).double().numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5 * max(1.0, np.abs(expected).max()))


@pytest.mark.parametrize("c_in,c_out,size", [(96, 24, 7), (24, 96, 5), (576, 96, 3), (320, 1280, 2), (16, 16, 9),
                                             (3, 5, 4), (1, 1, 3), (64, 64, 17)])
def test_wht_pointwise_forward_and_gradients_equal_the_reference(c_in: int, c_out: int, size: int) -> None:
    layer = WHTPointwise(c_in, c_out)
    _randomise(layer, c_in + c_out)
    x = torch.randn(2, c_in, size, size, requires_grad=True)
    expected = layer._forward_reference(x)
    n = layer.n
    coef, thr = layer.scale.reshape(n) * n**-0.5, layer.smooth.threshold.reshape(n).abs()
    got = K.wht_pointwise(x, coef, thr, torch.full((c_out,), n**-0.5))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    grad = torch.randn_like(expected)
    params = [x, layer.scale, layer.smooth.threshold]
    for a, b in zip(torch.autograd.grad(got, params, grad), torch.autograd.grad(expected, params, grad)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * (1 + float(b.abs().max())))


def test_wht_pointwise_folds_a_batch_norm_and_relu6() -> None:
    layer = WHTPointwise(40, 24).eval()
    _randomise(layer, 1)
    x = torch.randn(3, 40, 6, 5)
    scale, shift = torch.rand(24) + 0.5, torch.randn(24)
    n = layer.n
    with torch.no_grad():
        expected = (layer._forward_reference(x) * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)).clamp(0, 6)
        coef, thr = layer.scale.reshape(n) * n**-0.5, layer.smooth.threshold.reshape(n).abs()
        got = K.wht_pointwise(x, coef, thr, scale * n**-0.5, shift, K.RELU6)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("c_in,c_out,size,bias", [(1024, 1024, 5, False), (96, 576, 7, False), (576, 96, 3, True),
                                                  (320, 1280, 2, False), (16, 16, 9, True), (3, 5, 4, False),
                                                  (96, 24, 11, False)])
def test_butterfly_equals_its_stages(c_in: int, c_out: int, size: int, bias: bool) -> None:
    layer = ButterflyPointwise(c_in, c_out, bias=bias).eval()
    x = torch.randn(2, c_in, size, size)
    scale, shift = torch.rand(c_out) + 0.5, torch.randn(c_out)
    with torch.no_grad():
        stages = layer._stages(x) + (layer.bias.view(1, -1, 1, 1) if bias else 0)
        plain = K.butterfly(x, list(layer.weights), layer._width_in, c_out, None, layer.bias if bias else None)
        folded = K.butterfly(x, list(layer.weights), layer._width_in, c_out, scale, shift, K.RELU6)
    torch.testing.assert_close(plain, stages, rtol=1e-5, atol=1e-5)
    expected = (stages * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)).clamp(0, 6)
    torch.testing.assert_close(folded, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("channels,h,w,tile,stride,shared", [
    (8, 7, 7, 4, 1, False), (8, 7, 9, 4, 2, False), (3, 56, 56, 4, 1, False), (3, 13, 5, 8, 2, False),
    (5, 2, 2, 4, 2, False), (4, 16, 16, 16, 1, True), (4, 4, 32, (2, 16), 2, True), (2, 1, 1, 4, 2, False),
    (2, 9, 3, 2, 2, False), (3, 5, 40, (1, 32), 1, True)])
def test_wht2d_equals_the_reference(channels, h, w, tile, stride, shared) -> None:
    layer = WHT2d(channels, tile, stride=stride, shared=shared).eval()
    _randomise(layer, channels * h)
    x = torch.randn(2, channels, h, w)
    th, tw = layer.tile
    groups, norm = layer.scale.shape[0], (th * tw) ** -0.5
    with torch.no_grad():
        expected = layer._forward_reference(x)
        coef = layer.scale.reshape(groups, th, tw) * norm
        got = K.wht2d(x, coef, layer.smooth.threshold.reshape(groups, th, tw).abs(), stride, norm)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_results_do_not_depend_on_the_thread_count(threads: int) -> None:
    layer = WHTPointwise(96, 24)
    _randomise(layer, 3)
    x = torch.randn(3, 96, 9, 9, requires_grad=True)
    n = layer.n
    coef, thr, scale = layer.scale.reshape(n) * n**-0.5, layer.smooth.threshold.reshape(n).abs(), torch.full((24,), n**-0.5)
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = K.wht_pointwise(x, coef, thr, scale)
        (grad_one,) = torch.autograd.grad(one.sum(), [x])
        torch.set_num_threads(threads)
        many = K.wht_pointwise(x, coef, thr, scale)
        (grad_many,) = torch.autograd.grad(many.sum(), [x])
    finally:
        torch.set_num_threads(previous)
    assert torch.equal(one, many) and torch.equal(grad_one, grad_many)


def test_library_describes_its_simd() -> None:
    assert _native.describe().startswith(f"fusionnas-kernels {_native.ABI_VERSION} ")


def test_the_custom_ops_pass_torch_opcheck() -> None:
    """Fake kernels, schemas and autograd registrations as torch.library expects them."""
    x = torch.randn(2, 24, 3, 5, requires_grad=True)
    coef, thr = torch.rand(64, requires_grad=True), (torch.rand(64) * 0.1).requires_grad_()  # n = 64 >= 24, 40
    torch.library.opcheck(torch.ops.fusionnas.wht_pointwise, (x, coef, thr, torch.full((40,), 64**-0.5), None, 0))
    torch.library.opcheck(torch.ops.fusionnas.fwht, (torch.randn(3, 16, 5, requires_grad=True),))
    layer = ButterflyPointwise(24, 40)
    torch.library.opcheck(torch.ops.fusionnas.butterfly, (x.detach(), [w.detach() for w in layer.weights],
                                                          layer._width_in, 40, None, None, 0))
    torch.library.opcheck(torch.ops.fusionnas.wht2d, (x.detach(), torch.rand(24, 4, 4), torch.rand(24, 4, 4), 2, 0.25))


def test_torch_compile_captures_each_transform_as_one_op() -> None:
    model = torch.nn.Sequential(WHTPointwise(24, 40), ButterflyPointwise(40, 24), WHT2d(24, 4, shared=False)).eval()
    x = torch.randn(2, 24, 6, 6)
    captured = []

    def backend(graph_module, example_inputs):
        captured.extend(str(node.target) for node in graph_module.graph.nodes if node.op == "call_function")
        return graph_module.forward

    with torch.no_grad():
        expected = model(x)
        got = torch.compile(model, backend=backend, fullgraph=True)(x)
    torch.testing.assert_close(got, expected)
    assert {"fusionnas.wht_pointwise.default", "fusionnas.butterfly.default", "fusionnas.wht2d.default"} <= set(captured)


def test_a_missing_library_names_the_build_command(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(_native, "LIBRARY", tmp_path / "libfusionnas_kernels.so")
    lib, reason = _native._load.__wrapped__()
    assert lib is None and "python -m fusionnas.kernels.build" in reason


def test_reference_forms_switch_the_kernels_off_in_this_thread_only() -> None:
    with _native.reference_forms():
        assert not _native.available() and _native.library() is None
    assert _native.available()
