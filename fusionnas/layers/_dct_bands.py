"""The hard-masked path of :class:`~fusionnas.layers.dct.DCTPointwise`: bands of channels and their GEMMs.

Input channels that keep the same (k_h, k_w) block of low frequencies form a
band; a band is transformed with the first rows of the DCT matrices and
multiplied by its columns of the weight.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from fusionnas.layers._checks import is_tracing


def outside_trace(make: Callable[[], torch.Tensor]) -> torch.Tensor:
    """Run ``make`` with tracing paused, so its result is a plain constant to the tracer.

    Otherwise a tensor built while tracing (fvcore, ONNX export) is recorded as
    ops the FLOP counter cannot count, and it belongs to that trace's graph.
    """
    state = torch._C._get_tracing_state()
    if state is None:
        return make()
    torch._C._set_tracing_state(None)
    try:
        return make()
    finally:
        torch._C._set_tracing_state(state)


def band_side(fraction: float, n: int) -> int:
    """Kept rows along a side of n: ``clamp(ceil(fraction * n), 1, n)``."""
    return min(max(math.ceil(fraction * n), 1), n)


@dataclass(frozen=True)
class Band:
    """Input channels that keep the same (k_h, k_w) block of low frequencies."""

    k_h: int
    k_w: int
    channels: tuple[int, ...] | None  # None: every input channel, in order


def plan_bands(fractions: Sequence[float], h: int, w: int) -> list[Band]:
    """Group channels by kept block, largest first (blocks are nested)."""
    groups: dict[tuple[int, int], list[int]] = {}
    for c, t in enumerate(fractions):
        groups.setdefault((band_side(t, h), band_side(t, w)), []).append(c)
    if len(groups) == 1:
        ((k_h, k_w),) = groups
        return [Band(k_h, k_w, None)]
    return [Band(k_h, k_w, tuple(groups[k_h, k_w])) for k_h, k_w in sorted(groups, reverse=True)]


def dct_path_flops(bands: list[Band], c_in: int, c_out: int, h: int, w: int, bias: bool) -> int:
    """Multiply-adds (and adds) of one image through the hard-masked DCT path."""
    big_h, big_w = bands[0].k_h, bands[0].k_w
    flops = c_out * big_w * h * (big_h + w)  # inverse: along H, then along W
    for i, band in enumerate(bands):
        c_b = c_in if band.channels is None else len(band.channels)
        flops += c_b * h * band.k_w * (w + band.k_h)  # forward: along W, then along H
        flops += c_out * c_b * band.k_h * band.k_w  # channel product
        if i:
            flops += c_out * band.k_h * band.k_w  # accumulation into the largest block
    return flops + (c_out if bias else 0)


def take_channels(t: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``t[:, index]``; eagerly as ``index_select``: twice as fast, but fvcore flags it as uncounted."""
    return t[:, index] if is_tracing() else t.index_select(1, index)


# Layout: the coefficients live as (k_w, N, k_h, C), frequency-major and channels
# last, so that every step below is one GEMM (or a batch of large ones) on a
# transposed view and no step copies or permutes data.


def dct_coefficients(x: torch.Tensor, dh: torch.Tensor, dw: torch.Tensor) -> torch.Tensor:
    """First ``len(dh) x len(dw)`` 2-D DCT coefficients of (N, C, H, W): (k_w * N, k_h, C)."""
    n, c, h, w = (int(d) for d in x.shape)
    k_h, k_w = int(dh.shape[0]), int(dw.shape[0])
    a = torch.mm(dw, x.reshape(n * c * h, w).t())  # (k_w, N*C*H): along W
    batch = k_w * n
    return torch.bmm(dh.expand(batch, k_h, h), a.view(batch, c, h).transpose(1, 2))  # along H


def channel_product(z: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``z @ W^T`` for z (M, C_in), W (C_out, C_in, 1, 1): (M, C_out).

    Computed as a 1x1 convolution of z seen as a channels-last (1, C_in, M, 1)
    map: no copy, and oneDNN's kernel beats the BLAS GEMM by 10-20 % here.
    """
    m, c = (int(d) for d in z.shape)
    y = F.conv2d(z.view(1, m, 1, c).permute(0, 3, 1, 2), weight)  # (1, C_out, M, 1), channels last
    return y.permute(0, 2, 3, 1).reshape(m, -1)


def inverse_dct(
    y: torch.Tensor, dh: torch.Tensor, dw: torch.Tensor, n: int, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Inverse 2-D DCT of coefficients (k_w, N, k_h, C) (any view of them): (N*C*H, W)."""
    k_h, h = (int(d) for d in dh.shape)
    k_w = int(dw.shape[0])
    batch = k_w * n
    y = y.reshape(batch, k_h, -1)
    t = torch.bmm(y.transpose(1, 2), dh.expand(batch, k_h, h))  # (k_w*N, C, H): along H
    t = t.view(k_w, -1).t()  # (N*C*H, k_w)
    return torch.mm(t, dw) if out is None else torch.mm(t, dw, out=out)  # along W
