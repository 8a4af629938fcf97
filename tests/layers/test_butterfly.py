"""ButterflyPointwise: equals its dense matrix, has the butterfly structure, costs n * sum(k_s)."""
import functools
import math
import warnings

import numpy as np
import pytest
import torch

import fusionnas.layers.butterfly as butterfly
from _onnx import assert_onnx_matches
from fusionnas.evaluators import count_flops
from fusionnas.evaluators.cost import count_params
from fusionnas.layers import create_fusion
from fusionnas.layers._butterfly_chunked import ChunkedButterfly
from fusionnas.layers.butterfly import ButterflyPointwise, butterfly_factors

# Every test runs on the native kernels and on the reference forms (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("kernel_path")

# (C_in, C_out, radix): MobileNetV2 shapes, the seed shape, awkward and prime sizes,
# expansions that crop and reductions that pad, and many-stage small radices.
CASES = [
    (16, 96, 32), (24, 144, 32), (144, 24, 32), (160, 96, 32), (96, 576, 32), (576, 96, 32),
    (320, 1280, 32), (1024, 1024, 32), (3, 7, 32), (1, 1, 32), (7, 13, 32), (13, 7, 32),
    (1, 5, 32), (5, 1, 32), (16, 96, 4), (160, 96, 4), (12, 20, 4), (20, 12, 4), (35, 100, 32),
    (100, 35, 32), (64, 64, 2), (74, 74, 32), (12, 12, (3, 4)), (30, 12, (3, 4)), (12, 30, (4, 3)),
]


def _ids(case):
    c_in, c_out, radix = case
    return f"{c_in}-{c_out}-r{radix}"


def _layer(c_in, c_out, radix, **kwargs):
    return ButterflyPointwise(c_in, c_out, radix=radix, **kwargs).double()


def _apply_dense(matrix, x):
    return torch.einsum("oi,nihw->nohw", matrix, x)


@pytest.mark.parametrize("case", CASES, ids=_ids)
@pytest.mark.parametrize(
    "mode,chunk_bytes",
    [("train", None), ("eval", None), ("train", 1), ("eval", 1), ("eval", 3000)],
    ids=["train", "eval", "train-image-by-image", "eval-image-by-image", "eval-chunks"],
)
def test_layer_equals_its_dense_matrix_as_a_1x1_conv(case, mode, chunk_bytes, monkeypatch):
    if chunk_bytes is not None:  # how many images the CPU path takes at a time
        monkeypatch.setattr(butterfly, "_CHUNK_BYTES", chunk_bytes)
    layer = _layer(*case).train(mode == "train")
    x = torch.randn(5, case[0], 3, 2, dtype=torch.float64)
    with torch.no_grad():
        expected = _apply_dense(layer.dense_matrix(), x)
    torch.testing.assert_close(layer(x), expected, atol=1e-10, rtol=0)  # with autograd
    with torch.no_grad():
        torch.testing.assert_close(layer(x), expected, atol=1e-10, rtol=0)
        torch.testing.assert_close(layer(x[:1]), expected[:1], atol=1e-10, rtol=0)


def test_non_contiguous_input_and_bias(monkeypatch):
    monkeypatch.setattr(butterfly, "_CHUNK_BYTES", 1)
    layer = _layer(96, 576, 32, bias=True)
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(2, 96, 5, 4, dtype=torch.float64).to(memory_format=torch.channels_last)
    expected = _apply_dense(layer.dense_matrix(), x) + layer.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(layer(x), expected, atol=1e-10, rtol=0)
    with torch.inference_mode():
        torch.testing.assert_close(layer(x), expected, atol=1e-10, rtol=0)


# --- butterfly structure, checked against references written from the definition ---


def _digit_move_permutation(radix, s):
    """Permutation matrix Q with (Q x)[m] = x[c]: m lists the digits other than s (cyclically
    from s + 1, most significant first), then digit s; c is the natural channel index."""
    n, stages = math.prod(radix), len(radix)
    order = [*range(s + 1, stages), *range(s), s]
    natural = np.arange(n).reshape(radix).transpose(order).ravel()
    return np.eye(n)[natural]


def _reference_butterfly(radix, stage_blocks):
    """Dense n x n butterfly: stage s is Q_s^T (sum_g E_gg (x) B_s[g]) Q_s, applied first to last."""
    n = math.prod(radix)
    total = np.eye(n)
    for s, blocks in enumerate(stage_blocks):
        groups = blocks.shape[0]
        block_diagonal = sum(np.kron(np.diag(np.eye(groups)[g]), blocks[g]) for g in range(groups))
        q = _digit_move_permutation(radix, s)
        total = q.T @ block_diagonal @ q @ total
    return total


def _square_weights(layer):
    return [w.detach().numpy() for w in layer.weights]


@pytest.mark.parametrize("radix", [(3, 4), (4, 3), (8, 8), (2, 2, 2, 2), (4, 3, 2), (32, 32)])
def test_square_dense_matrix_is_the_product_of_its_stages(radix):
    n = math.prod(radix)
    layer = _layer(n, n, radix)
    expected = _reference_butterfly(radix, _square_weights(layer))
    np.testing.assert_allclose(layer.dense_matrix().detach().numpy(), expected, atol=1e-12)


@pytest.mark.parametrize("radix", [(3, 4), (8, 8), (2, 2, 2, 2), (5, 3, 2)])
def test_equal_blocks_give_the_kronecker_product(radix):
    n = math.prod(radix)
    layer = _layer(n, n, radix)
    mats = [np.random.default_rng(s).standard_normal((k, k)) for s, k in enumerate(radix)]
    with torch.no_grad():
        for weight, mat in zip(layer.weights, mats):
            weight.copy_(torch.from_numpy(mat).expand_as(weight))
    expected = functools.reduce(np.kron, mats)  # stage 1 acts on the most significant digit
    np.testing.assert_allclose(layer.dense_matrix().detach().numpy(), expected, atol=1e-10)


@pytest.mark.parametrize("radix", [(3, 4), (2, 2, 2, 2), (4, 3, 2)])
def test_exactly_one_path_from_every_input_to_every_output(radix):
    n = math.prod(radix)
    layer = _layer(n, n, radix)
    with torch.no_grad():
        for weight in layer.weights:
            weight.fill_(1.0)  # each entry of the product then counts the paths
    np.testing.assert_array_equal(layer.dense_matrix().detach().numpy(), np.ones((n, n)))


def _copy_weights(layer, j):
    """Stage blocks of copy j of an expansion or reduction, in the square layer's order."""
    radix, r = layer.radix, layer.copies
    blocks = []
    for s, w in enumerate(_square_weights(layer)):
        k = radix[s]
        if s == 0 and layer.out_channels > layer.in_channels:
            blocks.append(w[:, j * k : (j + 1) * k, :])  # rows (copy, e)
        elif s == len(radix) - 1 and layer.in_channels > layer.out_channels:
            blocks.append(w[:, :, j::r])  # columns (d, copy)
        else:  # groups (later digits, copy, earlier digits)
            later, earlier = math.prod(radix[s + 1 :]), math.prod(radix[:s])
            blocks.append(w.reshape(later, r, earlier, k, k)[:, j].reshape(-1, k, k))
    return blocks


@pytest.mark.parametrize("c_in,c_out,radix", [(12, 36, (3, 4)), (12, 30, (3, 4)), (8, 20, (2, 2, 2))])
def test_expansion_stacks_independent_butterflies_and_crops(c_in, c_out, radix):
    layer = _layer(c_in, c_out, radix)
    copies = [_reference_butterfly(radix, _copy_weights(layer, j)) for j in range(layer.copies)]
    expected = np.concatenate(copies)[:c_out]
    np.testing.assert_allclose(layer.dense_matrix().detach().numpy(), expected, atol=1e-12)


@pytest.mark.parametrize("c_in,c_out,radix", [(36, 12, (3, 4)), (30, 12, (3, 4)), (20, 8, (2, 2, 2))])
def test_reduction_sums_butterflies_of_interleaved_zero_padded_chunks(c_in, c_out, radix):
    layer = _layer(c_in, c_out, radix)
    r = layer.copies
    expected = np.zeros((c_out, c_in))
    for j in range(r):
        chunk = np.zeros((c_out, c_in))  # chunk j holds inputs j, j + r, ...; the rest is padding
        for c in range(c_out):
            if c * r + j < c_in:
                chunk[c, c * r + j] = 1.0
        expected += _reference_butterfly(radix, _copy_weights(layer, j)) @ chunk
    np.testing.assert_allclose(layer.dense_matrix().detach().numpy(), expected, atol=1e-12)


def test_initialisation_is_orthogonal_and_keeps_unit_rows():
    square = ButterflyPointwise(96, 96).double().dense_matrix().detach()
    torch.testing.assert_close(square @ square.T, torch.eye(96, dtype=torch.float64), atol=1e-5, rtol=0)
    for c_in, c_out in [(96, 576), (576, 96), (24, 144), (1024, 1024)]:
        rows = ButterflyPointwise(c_in, c_out).dense_matrix().detach().norm(dim=1)
        torch.testing.assert_close(rows, torch.ones(c_out), atol=1e-5, rtol=0)


# --- factorisation and cost ---


@pytest.mark.parametrize(
    "n,radix,expected",
    [(1024, 32, (32, 32)), (96, 32, (12, 8)), (576, 32, (24, 24)), (320, 32, (20, 16)),
     (1280, 32, (16, 10, 8)), (24, 32, (24,)), (7, 32, (7,)), (37, 32, (37,)), (74, 32, (37, 2)),
     (1, 32, (1,)), (16, 2, (2, 2, 2, 2)), (12, 4, (4, 3)), (1024, 4, (4, 4, 4, 4, 4))],
)
def test_butterfly_factors(n, radix, expected):
    assert butterfly_factors(n, radix) == expected


def test_factors_multiply_to_n_with_fewest_stages_then_smallest_sum():
    for n in range(1, 1100):
        factors = butterfly_factors(n, 32)
        assert math.prod(factors) == n and list(factors) == sorted(factors, reverse=True)
        primes = [p for p in range(2, n + 1) if n % p == 0 and all(p % q for q in range(2, p))]
        limit = max([32, *primes])
        assert all(k <= limit for k in factors)
        pairs = [(a, n // a) for a in range(2, n) if n % a == 0 and a <= limit and n // a <= limit]
        if n <= limit:
            assert factors == (n,)
        elif pairs:
            assert len(factors) == 2 and sum(factors) == min(map(sum, pairs))
        else:
            assert len(factors) > 2


# (C_in, C_out, radix, copies r, butterfly size n, factors): cost r * n * sum(k) per pixel,
# or C_in * C_out when there is a single (dense) stage.
COST_CASES = [
    (1024, 1024, 32, 1, 1024, (32, 32)),
    (96, 576, 32, 6, 96, (12, 8)),
    (576, 96, 32, 6, 96, (12, 8)),
    (160, 96, 32, 2, 96, (12, 8)),
    (320, 1280, 32, 4, 320, (20, 16)),
    (16, 16, (2, 2, 2, 2), 1, 16, (2, 2, 2, 2)),
    (12, 30, (3, 4), 3, 12, (3, 4)),
    (64, 64, 4, 1, 64, (4, 4, 4)),
    (24, 144, 32, 1, 24, (24,)),
    (7, 13, 32, 1, 7, (7,)),
]


@pytest.mark.parametrize("c_in,c_out,radix,copies,n,factors", COST_CASES)
def test_parameters_and_flops_are_r_n_sum_k_per_pixel(c_in, c_out, radix, copies, n, factors):
    per_pixel = c_in * c_out if len(factors) == 1 else copies * n * sum(factors)
    layer = ButterflyPointwise(c_in, c_out, radix=radix)
    assert (layer.radix, layer.copies, layer.n) == (factors, copies, n)
    assert count_params(layer) == per_pixel
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # an uncounted op would warn
        assert count_flops(layer, (2, c_in, 3, 5)) == per_pixel * 2 * 3 * 5
    with_bias = ButterflyPointwise(c_in, c_out, radix=radix, bias=True)
    assert count_params(with_bias) == per_pixel + c_out
    assert count_flops(with_bias, (1, c_in, 4, 4)) == (per_pixel + c_out) * 16


def test_registered_as_bft():
    layer = create_fusion("bft", 24, 144, radix=8)
    assert isinstance(layer, ButterflyPointwise) and layer.radix == (6, 4)


# --- gradients, ONNX, errors ---


GRAD_CASES = [(8, 8, 2), (6, 10, 2), (10, 6, 2), (4, 9, 32), (12, 30, (3, 4)), (30, 12, (3, 4))]


@pytest.mark.parametrize("c_in,c_out,radix", GRAD_CASES)
@pytest.mark.parametrize("chunk_bytes", [1, None], ids=["image-by-image", "batched"])
def test_gradcheck_float64(c_in, c_out, radix, chunk_bytes, monkeypatch):
    if chunk_bytes is not None:
        monkeypatch.setattr(butterfly, "_CHUNK_BYTES", chunk_bytes)
    layer = _layer(c_in, c_out, radix, bias=True)
    names = [name for name, _ in layer.named_parameters()]
    x = torch.randn(2, c_in, 2, 3, dtype=torch.float64, requires_grad=True)

    def fn(inp, *params):
        with torch.nn.utils.stateless._reparametrize_module(layer, dict(zip(names, params))):
            return layer(inp)

    assert torch.autograd.gradcheck(fn, (x, *layer.parameters()), atol=1e-8)


@pytest.mark.parametrize("c_in,c_out,radix", GRAD_CASES)
def test_gradcheck_of_the_chunked_function_with_several_images_per_chunk(c_in, c_out, radix):
    layer = _layer(c_in, c_out, radix)
    x = torch.randn(5, c_in, 3, dtype=torch.float64, requires_grad=True)
    weights = tuple(layer.weights)

    def fn(inp, *ws):
        return ChunkedButterfly.apply(inp, layer._width_in, c_out, 2, *ws)

    assert torch.autograd.gradcheck(fn, (x, *weights), atol=1e-8)


@pytest.mark.parametrize("case", CASES, ids=_ids)
@pytest.mark.parametrize("chunk_bytes", [1, None], ids=["image-by-image", "batched"])
def test_every_parameter_gets_a_gradient(case, chunk_bytes, monkeypatch):
    if chunk_bytes is not None:
        monkeypatch.setattr(butterfly, "_CHUNK_BYTES", chunk_bytes)
    layer = ButterflyPointwise(case[0], case[1], radix=case[2])
    layer(torch.randn(2, case[0], 3, 3)).square().sum().backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("c_in,c_out,radix", [(64, 64, 32), (96, 576, 32), (160, 96, 32), (12, 20, 4), (3, 7, 32)])
def test_onnx_export_matches_torch(c_in, c_out, radix):
    layer = ButterflyPointwise(c_in, c_out, radix=radix, bias=True).eval()
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(2, c_in, 7, 6)
    assert_onnx_matches(layer, x)


@pytest.mark.parametrize("grad", [True, False])
def test_wrong_channel_count_names_expected_and_actual(grad):
    layer = ButterflyPointwise(96, 576)
    with torch.set_grad_enabled(grad), pytest.raises(ValueError, match="expects 96 input channels, got 95"):
        layer(torch.randn(1, 95, 4, 4))


@pytest.mark.parametrize(
    "radix,message",
    [((5, 5), r"product is the butterfly size min\(in_channels, out_channels\) = 24"),
     ((24, 1), "ints >= 2"), (1, "radix must be an int >= 2"), ((), "ints >= 2")],
)
def test_bad_radix_is_rejected(radix, message):
    with pytest.raises(ValueError, match=message):
        ButterflyPointwise(24, 48, radix=radix)
