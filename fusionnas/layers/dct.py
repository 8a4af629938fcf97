"""1x1 convolution on 2-D DCT coefficients with learned per-channel frequency pruning (seed 001).

A 1x1 convolution mixes channels and a 2-D DCT mixes the pixels of one
channel, so the two commute: ``conv(X) = D^-1(W D(X))``. When every input
channel keeps only a band of its lowest frequencies, the channel product
shrinks to the kept coefficients and the truncated DCT needs only the first
rows of the DCT matrices (Buckler et al., arXiv 2109.07707; the choices the
paper leaves open are recorded in shared/PAPERS.md).
"""
from __future__ import annotations

import functools
import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from fusionnas.layers._checks import check_input, check_positive, fast_path_allowed, is_tracing
from fusionnas.layers._dct_bands import (
    Band,
    band_side,
    channel_product,
    dct_coefficients,
    dct_path_flops,
    inverse_dct,
    outside_trace,
    plan_bands,
    take_channels,
)
from fusionnas.layers.registry import register_fusion

__all__ = ["dct_matrix", "DCTPointwise", "frequency_regularizer"]

# Inference path: images per chunk are chosen so that one chunk's largest
# intermediate stays within this many bytes. That bounds the extra memory and
# keeps buffers small enough for malloc to recycle instead of mapping fresh
# pages; speed is flat (within noise) from 4 to 32 MiB at 10x1024x32x32.
_CHUNK_BYTES = 8 << 20



@functools.lru_cache(maxsize=64)
def _dct_cached(n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    def build() -> torch.Tensor:
        k = torch.arange(n, dtype=torch.float64)[:, None]
        i = torch.arange(n, dtype=torch.float64)[None, :]
        d = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2 / n)
        d[0] /= math.sqrt(2)
        return d.to(dtype=dtype, device=device)

    return outside_trace(build)


def dct_matrix(n: int, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> torch.Tensor:
    """Orthonormal n x n DCT-II matrix, rows = frequencies (cached; do not modify it).

    ``dct_matrix(n) @ x`` equals ``scipy.fft.dct(x, type=2, norm="ortho")``;
    its transpose is the inverse.

    Example:
        >>> dct_matrix(2)
        tensor([[ 0.7071,  0.7071],
                [ 0.7071, -0.7071]])
    """
    check_positive("n", n)
    return _dct_cached(n, dtype, torch.device(device))



def _frequency_penalty(layer: DCTPointwise) -> torch.Tensor:
    return layer.penalty()


@register_fusion("dct", letter="d", loss=_frequency_penalty)
class DCTPointwise(nn.Module):
    """1x1 convolution computed on 2-D DCT coefficients; each input channel keeps a low band.

    ``Y = D^-1(W (M . D(X)))``, with ``D`` the orthonormal 2-D DCT-II over the
    whole H x W map (two small matmuls) and ``M`` the per-input-channel mask.
    Input channel c has a learned threshold ``t_c``, a fraction of the map
    side (so one layer serves any H, W; init ``init_fraction``, 1.0 keeps
    everything). It keeps coefficients (u, v) with ``u < k_h`` and ``v < k_w``,
    ``k_h = clamp(ceil(t_c H), 1, H)`` (k_w likewise): a square band in
    relative frequency, i.e. ``max(u/H, v/W) < t_c``. With ``t_c = 1`` the layer
    equals the 1x1 conv with the same ``weight`` (shaped like a conv's, so a
    conv's ``state_dict`` loads into it).

    Training: the soft mask ``sigmoid(S (t_c - max(u/H, v/W)) / tau)``,
    ``S = max(H, W)`` (for a square map, ``(t_c S - max(u, v)) / tau`` in
    index units), on the full DCT, so the thresholds get gradients; the
    regulariser :meth:`penalty` is the mean soft kept fraction. Note that at
    ``t_c = 1`` the soft mask still damps the highest frequency by
    ``sigmoid(1 / tau)``.

    Eval: hard masks, and the pruned coefficients are never computed.
    Channels are grouped into bands b of equal (k_h, k_w) with C_b channels;
    each band is transformed with the first rows of the DCT matrices, one
    dense GEMM with its columns of W adds it into the largest kept block
    (K_h, K_w), and one truncated inverse DCT of that block gives Y (without
    autograd, a chunk of images at a time). FLOPs per image (what
    :func:`~fusionnas.evaluators.count_flops` reports)::

        sum_b [C_b H k_w (W + k_h)           forward DCT, along W then H
               + C_out C_b k_h k_w]          channel product
        + sum_{b not largest} C_out k_h k_w  accumulation
        + C_out K_w H (K_h + W)              inverse DCT, along H then W
        + C_out if bias                      bias, added to the DC coefficient

    With ``dense_fallback`` (default) eval runs the plain 1x1 conv
    (``C_out C_in H W``, exactly equal) whenever that needs no more FLOPs,
    as it does when everything is kept: the layer never costs more than a
    conv. :meth:`flops` gives the per-image count of whichever path runs.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        tau: temperature of the soft mask, in frequency-index units.
        bias: add a learnable bias, like ``nn.Conv2d(bias=True)``.
        init_fraction: initial threshold of every channel (fraction of side).
        dense_fallback: in eval, run the 1x1 conv when it is not dearer.
        input_size: (H, W) for :meth:`penalty` and :attr:`kept_fraction`
            before the first forward; afterwards the last input's size.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        tau: float = 0.5,
        bias: bool = False,
        init_fraction: float = 1.0,
        dense_fallback: bool = True,
        input_size: int | tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        check_positive("in_channels", in_channels)
        check_positive("out_channels", out_channels)
        if not tau > 0:
            raise ValueError(f"tau must be > 0, got {tau!r}")
        if not init_fraction > 0:
            raise ValueError(f"init_fraction must be > 0, got {init_fraction!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.tau = float(tau)
        self.dense_fallback = dense_fallback
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.threshold = nn.Parameter(torch.full((in_channels,), float(init_fraction)))
        if isinstance(input_size, int):
            input_size = (input_size, input_size)
        if input_size is not None:
            check_positive("input_size[0]", input_size[0])
            check_positive("input_size[1]", input_size[1])
        self._last_size: tuple[int, int] | None = input_size
        self._plan_cache: tuple[tuple[int, int, int], list[Band]] | None = None
        # nn.Conv2d's initialisation, so the layer starts as the conv it replaces.
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(in_channels)
            nn.init.uniform_(self.bias, -bound, bound)

    def extra_repr(self) -> str:  # noqa: D102
        return (
            f"{self.in_channels}, {self.out_channels}, tau={self.tau}, bias={self.bias is not None}, "
            f"dense_fallback={self.dense_fallback}"
        )

    # -- masks and statistics ------------------------------------------------------------

    def _size(self, size: tuple[int, int] | None) -> tuple[int, int]:
        if size is not None:
            return size
        if self._last_size is None:
            raise RuntimeError(
                "DCTPointwise has not seen an input yet, so its map size is unknown; "
                "run a forward pass first or pass input_size=(H, W) to the constructor"
            )
        return self._last_size

    def soft_mask(self, size: tuple[int, int] | None = None) -> torch.Tensor:
        """Training mask (C_in, H, W) at ``size`` (default: the last input's)."""
        h, w = self._size(size)
        t = self.threshold
        u = torch.arange(h, dtype=t.dtype, device=t.device) / h
        v = torch.arange(w, dtype=t.dtype, device=t.device) / w
        position = torch.maximum(u[:, None], v[None, :])  # relative frequency max(u/H, v/W)
        return torch.sigmoid((t[:, None, None] - position) * (max(h, w) / self.tau))

    def penalty(self, size: tuple[int, int] | None = None) -> torch.Tensor:
        """Differentiable regulariser: mean over input channels of the soft kept fraction."""
        return self.soft_mask(size).mean()

    def kept_bands(self, size: tuple[int, int] | None = None) -> list[tuple[int, int]]:
        """Hard-mask (k_h, k_w) kept by each input channel at ``size`` (default: last input's)."""
        h, w = self._size(size)
        return [(band_side(t, h), band_side(t, w)) for t in self.threshold.detach().tolist()]

    @property
    def kept_fraction(self) -> float:
        """Fraction of (channel, u, v) coefficients the hard masks keep at the last input size."""
        h, w = self._size(None)
        return sum(k_h * k_w for k_h, k_w in self.kept_bands()) / (self.in_channels * h * w)

    @torch.no_grad()
    def set_kept_fraction(self, fraction: float) -> None:
        """Set every threshold to ``sqrt(fraction)``: each channel keeps ~``fraction`` of its coefficients."""
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
        self.threshold.fill_(math.sqrt(fraction))

    def _plan(self, h: int, w: int) -> list[Band]:
        # Cached until the thresholds change (any in-place update, optimizer step or
        # load_state_dict, bumps the tensor's version): planning costs ~0.1 ms, as
        # much as a whole small layer.
        key = (h, w, self.threshold._version)
        if self._plan_cache is None or self._plan_cache[0] != key:
            with warnings.catch_warnings():  # while tracing: the bands are constants, as intended
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                self._plan_cache = (key, plan_bands(self.threshold.detach().tolist(), h, w))
        return self._plan_cache[1]

    def _runs_dense(self, bands: list[Band], h: int, w: int) -> bool:
        dense = self.out_channels * self.in_channels * h * w
        return self.dense_fallback and dense <= dct_path_flops(
            bands, self.in_channels, self.out_channels, h, w, self.bias is not None
        )

    def flops(self, height: int, width: int) -> int:
        """FLOPs of one image in eval mode (the path that runs; see the class docstring)."""
        bands = self._plan(height, width)
        if self._runs_dense(bands, height, width):
            return self.out_channels * self.in_channels * height * width
        return dct_path_flops(
            bands, self.in_channels, self.out_channels, height, width, self.bias is not None
        )

    # -- forward -------------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        check_input(x, self.in_channels, type(self).__name__)
        h, w = int(x.shape[2]), int(x.shape[3])  # ints even while tracing
        if not is_tracing():  # a FLOP count or an export at another size is not training data
            self._last_size = (h, w)
        if self.training:
            return self._forward_soft(x)
        if torch.onnx.is_in_onnx_export():
            return self.export_forward(x)
        bands = self._plan(h, w)
        if self._runs_dense(bands, h, w):
            return F.conv2d(x, self.weight, self.bias)
        operands = self._band_operands(bands, x.device)
        if fast_path_allowed(x):
            return self._forward_inference(x, operands)
        return self._forward_hard(x, operands)

    def _forward_soft(self, x: torch.Tensor) -> torch.Tensor:
        """Full DCT, soft mask, product, inverse: differentiable in the thresholds."""
        n, c_in, h, w = (int(d) for d in x.shape)
        dh, dw = dct_matrix(h, x.dtype, x.device), dct_matrix(w, x.dtype, x.device)
        mask = self.soft_mask((h, w)).permute(2, 1, 0).unsqueeze(1)  # (W, 1, H, C_in)
        z = dct_coefficients(x, dh, dw).view(w, n, h, c_in) * mask
        y = inverse_dct(channel_product(z.reshape(-1, c_in), self.weight), dh, dw, n)
        y = y.reshape(n, self.out_channels, h, w)
        return y if self.bias is None else y + self.bias.reshape(-1, 1, 1)

    def _band_operands(
        self, bands: list[Band], device: torch.device, weight: torch.Tensor | None = None
    ) -> list[tuple[Band, torch.Tensor | None, torch.Tensor]]:
        """(band, channel index, its columns of ``weight``, by default W) for every band."""
        weight = self.weight if weight is None else weight
        operands = []
        for band in bands:
            if band.channels is None:
                operands.append((band, None, weight))
            else:
                index = outside_trace(lambda: torch.tensor(band.channels, device=device))
                operands.append((band, index, take_channels(weight, index)))
        return operands

    def export_forward(self, x: torch.Tensor, scale: torch.Tensor | None = None,
                       shift: torch.Tensor | None = None) -> torch.Tensor:
        """``scale * layer(x) + shift`` per output channel (eval mode), for any batch: what ONNX export traces.

        :meth:`_forward_hard`'s arithmetic with the batch left symbolic (every
        reshape infers it) and no in-place update: each band's product is
        padded to the largest block and added. A following batch norm comes
        in as ``scale``, folded into W's rows, and ``shift``, added with the
        bias after the inverse (a constant map is its DC coefficient alone).
        Where the dense conv is not dearer, one Conv carries all of it.
        """
        h, w = int(x.shape[2]), int(x.shape[3])  # the map is fixed; the batch is not
        c_out = self.out_channels
        scale = torch.ones(c_out, dtype=x.dtype, device=x.device) if scale is None else scale
        bias = torch.zeros(c_out, dtype=x.dtype, device=x.device) if shift is None else shift
        if self.bias is not None:
            bias = bias + scale * self.bias
        weight = self.weight * scale[:, None, None, None]
        bands = self._plan(h, w)
        if self._runs_dense(bands, h, w):
            return F.conv2d(x, weight, bias)
        big = bands[0]
        dh, dw = dct_matrix(h, x.dtype, x.device), dct_matrix(w, x.dtype, x.device)
        y = None  # output coefficients (K_w, N, K_h, C_out)
        for band, index, columns in self._band_operands(bands, x.device, weight):
            xb = x if index is None else x[:, index]
            c_b = int(columns.shape[1])
            a = torch.matmul(dw[: band.k_w], xb.reshape(-1, w).t())  # (k_w, N*C_b*H): along W
            z = torch.matmul(dh[: band.k_h], a.reshape(-1, c_b, h).transpose(1, 2))  # (k_w*N, k_h, C_b)
            p = torch.matmul(z, columns.reshape(c_out, c_b).t()).reshape(band.k_w, -1, band.k_h, c_out)
            p = F.pad(p, (0, 0, 0, big.k_h - band.k_h, 0, 0, 0, big.k_w - band.k_w))
            y = p if y is None else y + p
        t = torch.matmul(y.reshape(-1, big.k_h, c_out).transpose(1, 2), dh[: big.k_h])  # (K_w*N, C_out, H)
        y = torch.matmul(t.reshape(big.k_w, -1).t(), dw[: big.k_w])  # (N*C_out*H, W): along W
        return y.reshape(-1, c_out, h, w) + bias.reshape(1, -1, 1, 1)

    def _forward_hard(
        self,
        x: torch.Tensor,
        operands: list[tuple[Band, torch.Tensor | None, torch.Tensor]],
        out: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Hard-masked DCT path; the one the FLOP counter sees (ONNX export traces :meth:`export_forward`)."""
        n, _, h, w = (int(d) for d in x.shape)
        c_out = self.out_channels
        dh, dw = dct_matrix(h, x.dtype, x.device), dct_matrix(w, x.dtype, x.device)
        y = None  # output coefficients (K_w, N, K_h, C_out)
        for band, index, weight in operands:
            xb = x if index is None else take_channels(x, index)
            z = dct_coefficients(xb, dh[: band.k_h], dw[: band.k_w])  # (k_w * N, k_h, C_b)
            p = channel_product(z.reshape(-1, weight.shape[1]), weight)
            p = p.reshape(band.k_w, n, band.k_h, c_out)
            if y is None:
                y = p
            else:
                y[: band.k_w, :, : band.k_h].add_(p)
        if self.bias is not None:
            # A constant map b has one DCT coefficient, b sqrt(HW), at (0, 0).
            y[0, :, 0].add_(self.bias, alpha=math.sqrt(h * w))
        big = operands[0][0]
        y = inverse_dct(y, dh[: big.k_h], dw[: big.k_w], n, out=None if out is None else out.view(-1, w))
        return y.reshape(n, c_out, h, w)

    @torch.no_grad()
    def _forward_inference(
        self, x: torch.Tensor, operands: list[tuple[Band, torch.Tensor | None, torch.Tensor]]
    ) -> torch.Tensor:
        """Same arithmetic as :meth:`_forward_hard`, a chunk of images at a time, so
        that the intermediates stay in cache; the inverse writes into the output."""
        n, _, h, w = (int(d) for d in x.shape)
        big = operands[0][0]
        per_image = big.k_w * max(self.in_channels * h, self.out_channels * max(big.k_h, h))
        step = max(1, _CHUNK_BYTES // (x.element_size() * per_image))
        out = x.new_empty(n, self.out_channels, h, w)
        for start in range(0, n, step):
            self._forward_hard(x[start : start + step], operands, out=out[start : start + step])
        return out



def frequency_regularizer(model: nn.Module) -> torch.Tensor:
    """Sum of :meth:`DCTPointwise.penalty` over every DCT layer in ``model`` (0-dim tensor)."""
    penalties = [m.penalty() for m in model.modules() if isinstance(m, DCTPointwise)]
    if penalties:
        return torch.stack(penalties).sum()
    param = next(model.parameters(), None)
    if param is None or not param.is_floating_point():
        return torch.zeros(())
    return torch.zeros((), dtype=param.dtype, device=param.device)
