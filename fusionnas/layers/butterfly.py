"""Butterfly transform (BFT) channel fusion: a 1x1 conv factored into a few sparse stages (seed 003).

Channels are numbered in mixed radix, ``c = (d_1, ..., d_L)`` with digit
``d_s`` in ``range(k_s)`` and ``d_1`` the most significant. Stage s mixes digit
s: the channels that differ only in ``d_s`` form one group, and each of the
``n / k_s`` groups has its own learned ``k_s x k_s`` matrix. After the L stages
every input reaches every output along exactly one path. A stage is one
batched GEMM over a strided view, so the layer makes L passes over memory and
``n * sum(k_s)`` multiply-adds per pixel instead of the conv's ``n^2``.
"""
from __future__ import annotations

import functools
import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from fusionnas.kernels import onnx_nodes
from fusionnas.kernels import torch_ops as native
from fusionnas.layers._butterfly_chunked import ChunkedButterfly
from fusionnas.layers._checks import check_input, check_positive, fast_path_allowed, is_tracing
from fusionnas.layers._folded import Folded
from fusionnas.layers.registry import register_fusion

__all__ = ["ButterflyPointwise", "butterfly_factors"]

# Largest default stage matrix: two stages up to 1024 channels (see ButterflyPointwise).
_DEFAULT_RADIX = 32

# CPU path: images per chunk are chosen so that one chunk's widest
# intermediate stays within this many bytes, i.e. in the L2 cache.
_CHUNK_BYTES = 1 << 20


def _largest_prime_factor(n: int) -> int:
    largest, p = 1, 2
    while p * p <= n:
        while n % p == 0:
            largest, n = p, n // p
        p += 1
    return max(largest, n)


def _splits(m: int, parts: int, limit: int):
    """Non-increasing tuples of ``parts`` factors, each in [2, limit], whose product is m."""
    if parts == 1:
        if 2 <= m <= limit:
            yield (m,)
        return
    for f in range(min(limit, m), 1, -1):
        if m % f == 0 and f**parts >= m:  # the remaining factors are <= f
            for rest in _splits(m // f, parts - 1, f):
                yield (f, *rest)


@functools.lru_cache(maxsize=None)
def butterfly_factors(n: int, radix: int = _DEFAULT_RADIX) -> tuple[int, ...]:
    """Radices of an n-channel butterfly: fewest stages of size <= radix, then smallest sum.

    A prime factor larger than ``radix`` becomes a stage of its own; n <= radix
    (or prime) gives one dense stage. Largest radix first.

    Example:
        >>> butterfly_factors(1024), butterfly_factors(96), butterfly_factors(1280)
        ((32, 32), (12, 8), (16, 10, 8))
    """
    check_positive("n", n)
    if not isinstance(radix, int) or isinstance(radix, bool) or radix < 2:
        raise ValueError(f"radix must be an int >= 2 (the largest stage size), got {radix!r}")
    limit = max(radix, _largest_prime_factor(n))
    if n <= limit:
        return (n,)
    parts = 2
    while True:
        candidates = list(_splits(n, parts, limit))
        if candidates:
            return min(candidates, key=sum)
        parts += 1


def _orthogonal(batch: int, k: int) -> torch.Tensor:
    """``batch`` random k x k orthogonal matrices (Haar: QR with the signs of R's diagonal)."""
    q, r = torch.linalg.qr(torch.randn(batch, k, k))
    return q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)


@register_fusion("bft", letter="b")
class ButterflyPointwise(nn.Module):
    """Butterfly transform over channels, a drop-in for ``nn.Conv2d(C_in, C_out, 1, bias=False)``.

    **Square** (C_in = C_out = n = k_1 ... k_L): stage s splits the channels
    into ``n / k_s`` groups that differ only in digit s (see the module
    docstring) and multiplies each group by its own ``k_s x k_s`` matrix.
    ``weights[s - 1]`` has shape ``(n / k_s, k_s, k_s)``; its group index
    enumerates the other digits in the cyclic order ``d_{s+1}, ..., d_L, d_1,
    ..., d_{s-1}`` (most significant first), because each stage reads its
    digit as the leading axis of a strided view and writes it back as the last
    axis; after L stages the channels are in natural order again.

    **C_in != C_out**, the authors' wrapper with ``n = min(C_in, C_out)`` and
    ``r = ceil(max / min)`` independent n-channel BFTs:

    * expansion: the r BFTs all read the input and their outputs are
      concatenated (copy j gives channels ``[j n, (j + 1) n)``), the last copy
      cropped. Their first stages are fused into one ``(r k_1) x k_1`` matrix
      per group, ``weights[0]`` of shape ``(n / k_1, r k_1, k_1)``, rows ``(j, e)``.
    * reduction: the input is zero-padded to ``r n`` channels, chunk j gets
      channels ``i`` with ``i % r == j`` (a fixed permutation of the authors'
      contiguous chunks, which lets every stage stay one GEMM) and the r BFTs
      are summed. The sum is done inside the last stage, one ``k_L x (r k_L)``
      matrix per group, ``weights[-1]`` of shape ``(n / k_L, k_L, r k_L)``,
      columns ``(d_L, j)``.

    In both, the middle stages have one matrix per (copy, group): ``r n / k_s``
    of them, indexed ``(d_{s+1}, ..., d_L, j, d_1, ..., d_{s-1})``. A
    single-stage factorisation (n <= radix, or n prime) is a dense
    ``C_out x C_in`` matrix, ``weights[0]`` of shape ``(1, C_out, C_in)``.

    **Radix.** An int is the largest stage size and n is factored by
    :func:`butterfly_factors` (fewest stages, then smallest ``sum(k_s)``:
    1024 = 32 x 32, 96 = 12 x 8, 576 = 24 x 24, 320 = 20 x 16); a sequence
    gives the factors of n explicitly, e.g. ``(2, 2, 2, 2)`` for 16. The
    default 32 keeps up to 1024 channels in two stages, because each stage is
    a pass over memory wherever intermediates do not stay in cache: in the
    broadcast-matmul form (GPUs, and autograd over small maps) at
    10x1024x32x32, 2 threads, 32 x 32 / 16 x 8 x 8 / 4^5 took 68 / 95 / 159 ms
    forward and 159 / 220 / 364 ms forward+backward (the 1x1 conv: 144 and
    442 ms). The CPU path below keeps a chunk's intermediates in cache, so
    there the stage count matters less (forward 26 / 25 / 27 ms, 2^10: 31 ms;
    forward+backward 91 / 87 / 126 ms, 2^10: 184 ms). More stages would cost
    fewer multiply-adds (64 n for 32 x 32, 20 n for 4^5), but not less time.

    **Initialisation.** Every stage block is a random orthogonal matrix, so a
    square BFT is orthogonal and each copy of an expansion is too; in a
    reduction each chunk's block of the last stage is scaled by ``1/sqrt(r)``.
    Every output channel's row of the dense matrix then has unit norm (a bit
    less where a reduction pads) and keeps the variance of i.i.d. inputs
    (gain 1; the conv's default init gives 1/3, and a following batch norm
    removes the difference anyway).

    **Cost.** Parameters and multiply-adds per pixel: ``r n sum(k_s)``
    (``C_in C_out`` for a single stage), plus C_out for the bias. The crop of
    an expansion and the zero padding of a reduction are computed and counted
    like the rest: they are what the wrapper does. The reduction's r-way sum
    is part of the last stage's multiply-adds, not separate adds.

    **Speed.** On CPU (not tracing) a batch of images goes through
    ``ChunkedButterfly``: chunks of images sized to stay in cache (one image
    for large maps), each stage a GEMM on a strided view, the last stage
    written straight into the output; with autograd it saves only the input
    and recomputes a chunk's intermediates in backward. A single image, and
    autograd over chunks of small maps, are faster in the broadcast-matmul
    form (for one image it makes no copies either). Medians of
    interleaved runs on 2 threads, forward without autograd, conv vs this
    layer (the machine is noisy: ranges are over repeated runs):
    10x1024x32x32 144-155 vs 24-32 ms; 1x96x56x56 96->576 1.8-3.7 vs 0.7-2.9
    ms; 1x576x56x56 576->96 1.8-2.5 vs 0.7-1.5 ms; 1x320x7x7 320->1280 0.29 vs
    0.08-0.10 ms; training (forward+backward) 10x1024x32x32 440-460 vs 91-122 ms.
    Tracing (the FLOP counter, ONNX) and other devices use the broadcast-matmul
    form, the same function.

    Example:
        >>> layer = ButterflyPointwise(96, 576)
        >>> layer.radix, layer.copies, tuple(layer(torch.randn(1, 96, 4, 4)).shape)
        ((12, 8), 6, (1, 576, 4, 4))
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        radix: int | Sequence[int] = _DEFAULT_RADIX,
        bias: bool = False,
    ) -> None:
        super().__init__()
        check_positive("in_channels", in_channels)
        check_positive("out_channels", out_channels)
        n = min(in_channels, out_channels)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.n = n
        self.radix = self._factor(n, radix)
        self.copies = 1 if len(self.radix) == 1 else math.ceil(max(in_channels, out_channels) / n)
        expand = out_channels > in_channels
        # Channels the stages read and write: the padded input, the uncropped output.
        self._width_in = self.copies * n if len(self.radix) > 1 and not expand else in_channels
        self._width_out = self.copies * n if len(self.radix) > 1 and expand else out_channels
        self.weights = nn.ParameterList(nn.Parameter(w) for w in self._init_weights(expand))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self._folded = Folded()

    @staticmethod
    def _factor(n: int, radix: int | Sequence[int]) -> tuple[int, ...]:
        if isinstance(radix, int):
            return butterfly_factors(n, radix)
        factors = tuple(radix)
        if n == 1 and factors == (1,):
            return factors
        valid = all(isinstance(k, int) and not isinstance(k, bool) and k >= 2 for k in factors)
        if not (factors and valid and math.prod(factors) == n):
            raise ValueError(
                f"radix {radix!r} must be ints >= 2 whose product is the butterfly size "
                f"min(in_channels, out_channels) = {n}; pass e.g. {butterfly_factors(n)} "
                f"or an int largest radix"
            )
        return factors

    def _init_weights(self, expand: bool) -> list[torch.Tensor]:
        n, r, ks = self.n, self.copies, self.radix
        if len(ks) == 1:
            # Rows of r stacked orthogonal n x n blocks (cropped), as the wrapper would be.
            blocks = math.ceil(max(self.in_channels, self.out_channels) / n)
            w = _orthogonal(blocks, n)
            if expand:
                w = w.reshape(blocks * n, n)[: self.out_channels]
            else:
                w = w.permute(1, 2, 0).reshape(n, n * blocks)[:, : self.in_channels]
                w = w / math.sqrt(blocks)
            return [w.unsqueeze(0)]
        weights = [_orthogonal(r * n // k, k) for k in ks]
        if expand:  # (r n / k_1) blocks in (group, copy) order -> (group, (copy, row), col)
            weights[0] = weights[0].reshape(n // ks[0], r * ks[0], ks[0])
        elif r > 1:  # last stage: (group, row, (col, copy))
            k = ks[-1]
            last = weights[-1].reshape(r, n // k, k, k).permute(1, 2, 3, 0)
            weights[-1] = last.reshape(n // k, k, k * r) / math.sqrt(r)
        return weights

    def extra_repr(self) -> str:  # noqa: D102
        return (
            f"{self.in_channels}, {self.out_channels}, radix={self.radix}, copies={self.copies}, "
            f"bias={self.bias is not None}"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        check_input(x, self.in_channels, type(self).__name__)
        if torch.onnx.is_in_onnx_export() and not self.training:
            return self.export_forward(x)
        if (y := self.forward_fused(x)) is not None:
            return y
        chunked = x.device.type == "cpu" and not is_tracing() and not torch.is_autocast_enabled("cpu")
        step = self._images_per_chunk(x) if chunked else None
        # For one image the broadcast matmuls make no copies either. With autograd the
        # chunked function wins only image by image; for chunks of small maps it loses.
        if step is None or x.shape[0] == 1 or (torch.is_grad_enabled() and step > 1):
            y = self._stages(x)
        else:
            n_img, c_in, h, w = x.shape
            flat = x.reshape(n_img, c_in, h * w).contiguous()
            y = ChunkedButterfly.apply(flat, self._width_in, self.out_channels, step, *self.weights)
            y = y.view(n_img, self.out_channels, h, w)
        if self.bias is not None:
            y = y + self.bias.view(1, -1, 1, 1)
        return y

    def forward_fused(self, x: torch.Tensor, scale: torch.Tensor | None = None, shift: torch.Tensor | None = None,
                      relu6: bool = False) -> torch.Tensor | None:
        """``act(scale * layer(x) + shift)`` in inference through the native kernel (all stages per
        pixel strip in cache), or None where it cannot run (autograd, a trace, not CPU float32)."""
        if not (fast_path_allowed(x) and native.usable(x)):
            return None
        weights, shift = self._folded((*self.weights, self.bias, scale, shift), lambda: (
            list(self.weights), shift if self.bias is None else self.bias * (1 if scale is None else scale) + (
                0 if shift is None else shift)))
        return native.butterfly(x, weights, self._width_in, self.out_channels, scale, shift,
                                native.RELU6 if relu6 else 0)

    def native_node(self, x: torch.Tensor, scale: torch.Tensor | None = None, shift: torch.Tensor | None = None,
                    relu6: bool = False) -> torch.Tensor | None:
        """``act(scale * layer(x) + shift)`` as one ``fusionnas`` ONNX node while ``to_onnx(form="native")``
        exports (None otherwise); the layer's bias folds into the shift."""
        c_out = self.out_channels
        scale = torch.ones(c_out, dtype=x.dtype) if scale is None else scale
        shift = torch.zeros(c_out, dtype=x.dtype) if shift is None else shift
        if self.bias is not None:
            shift = shift + scale * self.bias
        return onnx_nodes.butterfly_node(x, list(self.weights), scale, shift, self._width_in, native.RELU6 if relu6 else 0)

    def _images_per_chunk(self, x: torch.Tensor) -> int:
        widest = max(self._width_in, *(p.shape[0] * p.shape[1] for p in self.weights))
        pixels = max(1, x.shape[2] * x.shape[3])
        return max(1, _CHUNK_BYTES // (x.element_size() * widest * pixels))

    def _stages(self, x: torch.Tensor) -> torch.Tensor:
        """The stages as broadcast matmuls: the form traced (FLOP counter, ONNX) and used off CPU."""
        n_img, c_in, h, w = (int(d) for d in x.shape)  # ints even while tracing
        pixels = h * w
        y = x.reshape(n_img, c_in, pixels)
        if self._width_in > c_in:
            y = F.pad(y, (0, 0, 0, self._width_in - c_in))
        for weight in self.weights:
            groups, k_out, k_in = (int(d) for d in weight.shape)
            # (G, k_out, k_in) @ (N, G, k_in, P): the stage's digit leads the view, ends the result
            y = torch.matmul(weight, y.reshape(n_img, k_in, groups, pixels).transpose(1, 2))
            y = y.reshape(n_img, groups * k_out, pixels)
        if self._width_out > self.out_channels:
            y = y[:, : self.out_channels]
        return y.reshape(n_img, self.out_channels, h, w)

    def export_forward(self, x: torch.Tensor, scale: torch.Tensor | None = None,
                       shift: torch.Tensor | None = None) -> torch.Tensor:
        """``scale * layer(x) + shift`` per output channel in few ONNX nodes, for any batch.

        What ``fusionnas export`` traces (eval mode); a following batch norm is
        passed in as ``scale`` and ``shift`` and folded into the last stage. A
        single stage is one 1x1 conv. Otherwise the first stages are
        Transpose, MatMul and one Reshape straight to the next stage's view;
        the last is a grouped 1x1 conv (after a Transpose and a Reshape) that
        carries the scale and, as its bias, the shift and the layer's bias: 7
        nodes for two stages (a Pad for a reduction, a Slice for a crop).
        """
        if (node := self.native_node(x, scale, shift)) is not None:
            return node
        n_img, c_in, h, w = (int(d) for d in x.shape)
        pixels, width = h * w, self._width_out
        scale = torch.ones(self.out_channels, dtype=x.dtype) if scale is None else scale
        bias = shift if shift is not None else torch.zeros(self.out_channels, dtype=x.dtype)
        if self.bias is not None:
            bias = bias + scale * self.bias
        if len(self.weights) == 1:
            weight = self.weights[0][0] * scale[:, None]
            return F.conv2d(x, weight.reshape(self.out_channels, c_in, 1, 1), bias)
        if self._width_in > c_in:
            x = F.pad(x, (0, 0, 0, 0, 0, self._width_in - c_in))
        groups, _, k_in = (int(d) for d in self.weights[0].shape)
        y = x.reshape(-1, k_in, groups, pixels)
        for weight, following in zip(self.weights[:-1], self.weights[1:]):
            next_groups, _, next_k_in = (int(d) for d in following.shape)
            y = torch.matmul(weight, y.transpose(1, 2)).reshape(-1, next_k_in, next_groups, pixels)
        last = self.weights[-1]
        groups, k_out, k_in = (int(d) for d in last.shape)
        rows = F.pad(scale, (0, width - self.out_channels), value=1.0)  # the cropped rows need no scale
        weight = (last.reshape(width, k_in) * rows[:, None]).reshape(width, k_in, 1, 1)
        y = y.transpose(1, 2).reshape(-1, groups * k_in, h, w)
        if width == self.out_channels:
            return F.conv2d(y, weight, bias, groups=groups)
        return F.conv2d(y, weight, groups=groups)[:, : self.out_channels] + bias.view(1, -1, 1, 1)

    def dense_matrix(self) -> torch.Tensor:
        """The equivalent (C_out, C_in) matrix of the linear part (bias left out)."""
        weight = self.weights[0]
        eye = torch.eye(self.in_channels, dtype=weight.dtype, device=weight.device)
        return self._stages(eye.view(self.in_channels, self.in_channels, 1, 1))[:, :, 0, 0].T
