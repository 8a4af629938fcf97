"""Fast Walsh-Hadamard transform along one dimension: the native kernel, or a few small dense GEMMs.

Where the native kernels are built (:mod:`fusionnas.kernels`), CPU float32
tensors go through ``fusionnas::fwht``: butterflies in registers, three levels
per pass over data in cache (``benchmarks/fwht.py``). Elsewhere, and in traces:

A stage-by-stage add/sub butterfly makes log2(n) passes over memory and is
slower than the 1x1 convolution it should replace. Sylvester's Hadamard matrix
factors as a Kronecker product, ``H_{ab} = H_a (x) H_b``, so the n-point
transform is a product of small dense Hadamard matrices applied along the axes
of an ``(a, b)`` view: two passes over memory for n = 1024, each a BLAS GEMM.
The arithmetic is counted as what the transform needs (n log2 n add/subs, see
:mod:`fusionnas.evaluators.cost`), not what the GEMMs happen to do.
"""
from __future__ import annotations

import functools
import math

import torch

from fusionnas.kernels import torch_ops as native

__all__ = ["fwht", "hadamard", "hadamard_factors", "FWHTFunction", "FWHT_FLOP_HANDLES", "is_power_of_two",
           "next_power_of_two"]

# Largest dense Hadamard factor. 32 x 32 GEMMs keep each pass memory-bound
# while using two passes for up to 1024 points (benchmarks/operators.py).
_MAX_FACTOR = 32


def is_power_of_two(n: int) -> bool:
    """True for 1, 2, 4, 8, ..."""
    return n >= 1 and n & (n - 1) == 0


def next_power_of_two(n: int) -> int:
    """The smallest power of two >= n (n >= 1)."""
    return 1 << (max(n, 1) - 1).bit_length()


def _build_hadamard(n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    # Never an inference tensor, even when first built under torch.inference_mode: the cached
    # matrix is used by autograd later.
    with torch.inference_mode(False):
        h = torch.ones(1, 1, dtype=dtype, device=device)
        while h.shape[0] < n:
            h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h


_build_hadamard_cached = functools.lru_cache(maxsize=64)(_build_hadamard)


def _hadamard_cached(n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    # A tensor made while tracing belongs to that trace's graph; never cache it.
    if torch.jit.is_tracing():
        return _build_hadamard(n, dtype, device)
    return _build_hadamard_cached(n, dtype, device)


def hadamard(n: int, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> torch.Tensor:
    """Sylvester-ordered n x n Hadamard matrix (same order as ``scipy.linalg.hadamard``)."""
    if not is_power_of_two(n):
        raise ValueError(f"the Hadamard size must be a power of two, got n={n}")
    return _hadamard_cached(n, dtype, torch.device(device))


def hadamard_factors(n: int, max_factor: int = _MAX_FACTOR) -> list[int]:
    """Split n = 2^k into as few balanced power-of-two factors <= max_factor as possible."""
    k = n.bit_length() - 1
    max_k = max_factor.bit_length() - 1
    parts = max(1, math.ceil(k / max_k))
    return [1 << (k // parts + (i < k % parts)) for i in range(parts)]


def _fwht_3d(x: torch.Tensor) -> torch.Tensor:
    """Transform the middle dim of a contiguous (L, n, R) tensor."""
    lead, n, trail = (int(d) for d in x.shape)  # ints even while tracing
    if n == 1:
        return x.clone()
    if trail > 1 and (n <= 8 or trail <= 4):
        return _butterfly_3d(x)
    sizes = hadamard_factors(n)
    for i, f in enumerate(sizes):
        outer = lead * math.prod(sizes[:i])
        inner = math.prod(sizes[i + 1 :]) * trail
        h = _hadamard_cached(f, x.dtype, x.device)
        if inner == 1:
            x = x.reshape(outer, f) @ h  # (outer, f): rows transform
        elif outer == 1:
            x = h @ x.reshape(f, inner)
        else:
            x = torch.matmul(h, x.reshape(outer, f, inner))  # batched (f, f) @ (f, inner)
    return x.reshape(lead, n, trail)


def _butterfly_3d(x: torch.Tensor) -> torch.Tensor:
    """The same transform as log2(n) add/sub passes over contiguous halves.

    Where n is small or the rows short, the GEMMs of :func:`_fwht_3d` are
    thousands of tiny batched products (a 4-point transform of 4x4 tiles:
    (4 x 4) @ (4 x 16) each); these passes over runs of ``h * R`` contiguous
    values are 2-5x faster there (one thread: 1.0 against 6.4 ms at (12288, 4, 16),
    0.5 against 1.2 ms at (32, 1024, 4)); the GEMMs stay ahead for long rows.
    """
    lead, n, trail = (int(d) for d in x.shape)
    half = n // 2
    while half >= 1:  # H_2h = [[H_h, H_h], [H_h, -H_h]]: sums on top, differences below
        pairs = x.reshape(lead, n // (2 * half), 2, half * trail)
        out = torch.empty_like(pairs)
        top, bottom = pairs[:, :, 0], pairs[:, :, 1]
        torch.add(top, bottom, out=out[:, :, 0])
        torch.sub(top, bottom, out=out[:, :, 1])
        x, half = out, half // 2
    return x.reshape(lead, n, trail)


class FWHTFunction(torch.autograd.Function):
    """Unnormalised FWHT of the middle dim of an (L, n, R) tensor.

    A named autograd function so that FLOP counters see one transform (n log2 n
    add/subs per transformed vector) instead of the GEMMs that compute it.
    H is symmetric, so the backward pass is the same transform.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return _fwht_3d(x.contiguous())

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return FWHTFunction.apply(grad)


def _fwht_flops(inputs: list, outputs: list) -> int:
    """n log2 n add/subs for each of the L*R transformed vectors of an (L, n, R) input (fvcore handle)."""
    lead, n, trail = inputs[0].type().sizes()
    return lead * trail * n * int(math.log2(n))


# What FLOP counters see of fwht(): one named op (see FWHTFunction); for the operators built on it.
FWHT_FLOP_HANDLES = {"prim::PythonOp.FWHTFunction": _fwht_flops}


def fwht(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Unnormalised fast Walsh-Hadamard transform of ``x`` along ``dim``.

    Equals ``x @ scipy.linalg.hadamard(n)`` along that dim, for n a power of
    two; apply it twice and divide by n to invert. Differentiable.

    Example:
        >>> fwht(torch.tensor([1.0, 0.0, 0.0, 0.0]))
        tensor([1., 1., 1., 1.])
    """
    if not x.is_floating_point():
        raise TypeError(f"fwht needs a floating-point tensor, got dtype {x.dtype}")
    dim = dim % x.dim() if x.dim() else 0
    n = int(x.shape[dim])
    if not is_power_of_two(n):
        raise ValueError(
            f"fwht needs a power-of-two length along dim {dim}, got {n}; "
            f"zero-pad to {next_power_of_two(n)} first"
        )
    lead = math.prod(int(d) for d in x.shape[:dim])
    trail = math.prod(int(d) for d in x.shape[dim + 1 :])
    # Traces (the FLOP counter's, ONNX) record FWHTFunction, the op their handles know.
    if not (torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()) and native.usable(x):
        return native.fwht(x.reshape(lead, n, trail)).reshape(x.shape)
    y = FWHTFunction.apply(x.reshape(lead, n, trail))
    return y.reshape(x.shape)
