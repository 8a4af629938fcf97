"""Walsh-Hadamard channel fusion (1D); the spatial layer :class:`WHT2d` lives in :mod:`.wht2d`."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from fusionnas.kernels import onnx_nodes
from fusionnas.kernels import torch_ops as native
from fusionnas.layers._checks import check_input, check_positive, fast_path_allowed, is_tracing
from fusionnas.layers._folded import Folded
from fusionnas.layers.fwht import (
    FWHT_FLOP_HANDLES,
    fwht,
    hadamard,
    hadamard_factors,
    is_power_of_two,
    next_power_of_two,
)
from fusionnas.layers.registry import register_fusion
from fusionnas.layers.thresholds import SmoothThreshold
from fusionnas.layers.wht2d import WHT2d

__all__ = ["WHTPointwise", "WHT2d"]

# Eval fast path: images per chunk are chosen so one chunk's coefficients
# (n x pixels floats) stay within this many bytes, i.e. in the L2/L3 caches.
_CHUNK_BYTES = 4 << 20
# Largest Hadamard factor of the in-cache inference path. There the dense factor
# products are compute-bound, so three factors of <= 16 (1024 = 8 x 8 x 16: 32
# multiply-adds per coefficient) beat two of 32 (64), ~35 vs ~58 ms at
# 10x1024x32x32 on 2 EPYC threads; out of cache, fwht() prefers fewer passes.
_INFERENCE_MAX_FACTOR = 16


@register_fusion("wht", letter="w", flop_handles=FWHT_FLOP_HANDLES)
class WHTPointwise(nn.Module):
    """Walsh-Hadamard channel fusion, a drop-in for a 1x1 convolution (seeds 000, 002).

    Per pixel: ``y = crop(W S_T(w * W pad(x)))`` where ``W = H_n / sqrt(n)`` is
    the orthonormal Walsh-Hadamard transform over channels, ``w`` a trainable
    per-coefficient scale (init 1), ``S_T`` smooth thresholding with a
    trainable per-coefficient threshold (init ``i / (10 n)``). The input is
    zero-padded to ``n = next_power_of_two(max(in, out))`` channels and the
    first ``out_channels`` outputs are kept; since ``w`` and ``T`` differ per
    coefficient, expanded outputs are not copies of each other.

    With ``block=b`` the transform is block-diagonal: channels are padded to
    a multiple of b and each group of b channels is transformed on its own
    (the seed-002 block variant).

    Parameters: 2n. FLOPs per pixel: two n log2(b) add/sub transforms, the
    scale (n), smooth thresholding (5n: abs, subtract, ReLU, tanh, multiply)
    and the output normalisation (out_channels).

    In inference (no autograd, not tracing) the same function is computed
    image-chunk by image-chunk with the Kronecker factors of H as small GEMMs,
    the scale and normalisation folded into them, so that the intermediates
    stay in cache (see benchmarks/operators.py). With autograd it runs
    :meth:`export_forward`, the same function as a few GEMMs and grouped
    convs; only a trace (the FLOP counter's) records the reference form.
    """

    def __init__(self, in_channels: int, out_channels: int, block: int | None = None) -> None:
        super().__init__()
        check_positive("in_channels", in_channels)
        check_positive("out_channels", out_channels)
        width = max(in_channels, out_channels)
        if block is None:
            block = next_power_of_two(width)
        elif not is_power_of_two(block):
            raise ValueError(f"block must be a power of two, got {block}; try {next_power_of_two(block)}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.block = block
        self.blocks = math.ceil(width / block)
        self.n = self.blocks * block
        self.scale = nn.Parameter(torch.ones(self.blocks, block, 1))
        self.smooth = SmoothThreshold((self.blocks, block, 1))
        self._folded = Folded()

    def extra_repr(self) -> str:  # noqa: D102
        return f"{self.in_channels}, {self.out_channels}, n={self.n}, block={self.block}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        check_input(x, self.in_channels, type(self).__name__)
        if (y := self.forward_fused(x)) is not None:
            return y
        if self.blocks == 1:
            if fast_path_allowed(x):
                return self._forward_inference(x)
            # Training: the factored form backpropagates 1.05-1.25x faster than the reference's
            # FWHTs at the proxy's shapes (benchmarks/operators.py). The FLOP counter traces the reference.
            if not is_tracing() or (torch.onnx.is_in_onnx_export() and not self.training):
                return self.export_forward(x)
        return self._forward_reference(x)

    def forward_fused(self, x: torch.Tensor, scale: torch.Tensor | None = None, shift: torch.Tensor | None = None,
                      relu6: bool = False) -> torch.Tensor | None:
        """``act(scale * layer(x) + shift)`` in the native kernel (one pass per pixel strip), or None
        where it cannot run: kernels not built, not CPU float32, a trace, autocast, the block variant.

        Differentiable without ``shift`` and ``relu6`` (its backward is native too); a batch norm
        folds into ``scale`` and ``shift`` only in inference.
        """
        if self.blocks != 1 or is_tracing() or torch.is_autocast_enabled(x.device.type) or not native.usable(x):
            return None
        coef, threshold, norm = self._folded((self.scale, self.smooth.threshold, scale),
                                             lambda: self._native_parameters(scale, x.dtype))
        return native.wht_pointwise(x, coef, threshold, norm, shift, native.RELU6 if relu6 else 0)

    def native_node(self, x: torch.Tensor, scale: torch.Tensor | None = None, shift: torch.Tensor | None = None,
                    relu6: bool = False) -> torch.Tensor | None:
        """``act(scale * layer(x) + shift)`` as one ``fusionnas`` ONNX node while ``to_onnx(form="native")``
        exports (None otherwise, and for the block variant, which has no node)."""
        if self.blocks != 1:
            return None
        coef, threshold, norm = self._native_parameters(scale, x.dtype)
        shift = torch.zeros(self.out_channels, dtype=x.dtype) if shift is None else shift
        return onnx_nodes.wht_pointwise_node(x, coef, threshold, norm, shift, native.RELU6 if relu6 else 0)

    def _native_parameters(self, scale: torch.Tensor | None, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        """The kernel's coef, threshold (>= 0) and output scale, the transform's 1/sqrt(n) folded in."""
        n = self.n
        norm = torch.full((self.out_channels,), n**-0.5, dtype=dtype) if scale is None else scale * n**-0.5
        return self.scale.reshape(n) * n**-0.5, self.smooth.threshold.reshape(n).abs(), norm

    def export_forward(self, x: torch.Tensor, scale: torch.Tensor | None = None,
                       shift: torch.Tensor | None = None) -> torch.Tensor:
        """``scale * layer(x) + shift`` per output channel in few ONNX nodes, for any batch.

        What ``fusionnas export`` traces (eval mode, ``block`` the whole width;
        a following batch norm is passed in as ``scale`` and ``shift``) and
        what training runs: differentiable, and faster with autograd than the
        reference form.
        ``H_n = H_a (x) H_b`` with channel ``c = i b + j``. Forward: a MatMul over
        ``i`` (``H_a``'s first ``ceil(c_in / b)`` columns: the zero padding is
        folded in), then a grouped 1x1 conv over ``j`` with the per-coefficient
        scale and ``1/sqrt(n)`` in its per-group matrices; smooth thresholding
        (5 nodes); inverse: a MatMul over ``i`` (only the rows that survive the
        crop), then a grouped conv over ``j`` that carries ``scale`` and, as its
        bias, ``shift``: 13 nodes. Where it costs no more multiply-adds, two
        dense 1x1 convs replace the factored products (7 nodes). Every matrix
        is a function of the parameters, folded into constants by the exporter.
        """
        if (node := self.native_node(x, scale, shift)) is not None:
            return node
        n_img, c_in, h, w = (int(d) for d in x.shape)
        n, c_out, pixels = self.n, self.out_channels, h * w
        a, b = _export_factors(n, c_in, c_out)
        norm = n**-0.5
        coefficient = self.scale.reshape(n) * norm
        threshold = self.smooth.threshold.reshape(1, n, 1, 1).abs()
        scale = torch.ones(c_out, dtype=x.dtype) if scale is None else scale
        if a == 1:  # dense: forward rows diag(coefficient) H[:, :c_in], inverse H[:c_out] / sqrt(n)
            hn = hadamard(n, x.dtype, x.device)
            u = F.conv2d(x, (coefficient[:, None] * hn[:, :c_in]).reshape(n, c_in, 1, 1))
            s = torch.tanh(u) * torch.relu(u.abs() - threshold)
            return F.conv2d(s, (hn[:c_out] * (norm * scale[:, None])).reshape(c_out, n, 1, 1), shift)
        k_in, k_out = -(-c_in // b), -(-c_out // b)
        ha, hb = hadamard(a, x.dtype, x.device), hadamard(b, x.dtype, x.device)
        if k_in * b != c_in:
            x = F.pad(x, (0, 0, 0, 0, 0, k_in * b - c_in))
        z = torch.matmul(ha[:, :k_in], x.reshape(-1, k_in, b * pixels)).reshape(-1, n, h, w)
        u = F.conv2d(z, (coefficient.reshape(a, b, 1) * hb).reshape(n, b, 1, 1), groups=a)
        s = torch.tanh(u) * torch.relu(u.abs() - threshold)
        y = torch.matmul(ha[:k_out], s.reshape(-1, a, b * pixels)).reshape(-1, k_out * b, h, w)
        rows = F.pad(scale, (0, k_out * b - c_out), value=1.0) * norm  # the cropped rows need no scale
        inverse = (hb.repeat(k_out, 1) * rows[:, None]).reshape(k_out * b, b, 1, 1)
        if k_out * b == c_out:
            return F.conv2d(y, inverse, shift, groups=k_out)
        y = F.conv2d(y, inverse, groups=k_out)[:, :c_out]
        return y if shift is None else y + shift.view(1, -1, 1, 1)

    def _forward_reference(self, x: torch.Tensor) -> torch.Tensor:
        """Differentiable, traceable form; the FLOP counter and ONNX see this one."""
        n_img, c_in, h, w = (int(d) for d in x.shape)
        pixels = h * w
        x = x.reshape(n_img, c_in, pixels)
        if self.n > c_in:
            x = F.pad(x, (0, 0, 0, self.n - c_in))
        z = fwht(x.reshape(n_img, self.blocks, self.block, pixels), dim=2)  # (N, m, b, P)
        s = self.smooth(z * (self.scale * self.block**-0.5))
        y = fwht(s, dim=2).reshape(n_img, self.n, pixels)[:, : self.out_channels]
        return (y * self.block**-0.5).reshape(n_img, self.out_channels, h, w)

    @torch.no_grad()
    def _forward_inference(self, x: torch.Tensor) -> torch.Tensor:
        """Same function, a chunk of images at a time in reused buffers, so that the
        intermediates stay in cache and no chunk pays for fresh pages."""
        n_img, c_in, h, w = (int(d) for d in x.shape)
        pixels, n, c_out = h * w, self.n, self.out_channels
        sizes = hadamard_factors(n, _INFERENCE_MAX_FACTOR)
        rest = n // sizes[0]  # size of one step along the first (outermost) axis
        hs = [hadamard(f, x.dtype, x.device) for f in sizes]
        norm = n**-0.5
        # tanh(z) = 2 sigmoid(2z) - 1, and sigmoid is several times cheaper than tanh
        # on CPUs. With u = 2z and the threshold doubled, kept = relu(|u| - 2T) = 2 relu(|z| - T),
        # so S_T(z) = tanh(z) relu(|z| - T) = kept * (sigmoid(u) - 1/2).
        # The forward's last factor carries the per-coefficient scale, 1/sqrt(n) and that 2.
        groups, last = n // sizes[-1], sizes[-1]
        scaled_last = self.scale.reshape(groups, last, 1) * ((2 * norm) * hs[-1])  # (G, f, f)
        if len(sizes) == 1:
            scaled_last = scaled_last[0]
        k_in = math.ceil(c_in / rest)  # input rows of the first factor that are not zero
        k_out = math.ceil(c_out / rest)  # output rows of the last inverse step we need
        first_in = (scaled_last if len(sizes) == 1 else hs[0])[:, :k_in]
        first_out = hs[0][:k_out] * norm
        threshold = self.smooth.threshold.reshape(n, 1).abs() * 2

        out = x.new_empty(n_img, k_out * rest, pixels)
        x = x.reshape(n_img, c_in, pixels)
        step = min(n_img, max(1, _CHUNK_BYTES // (x.element_size() * n * pixels)))
        ping, pong, kept = (x.new_empty(step, n, pixels) for _ in range(3))
        for start in range(0, n_img, step):
            xc = x[start : start + step]
            b = xc.shape[0]
            if k_in * rest != c_in:
                xc = F.pad(xc, (0, 0, 0, k_in * rest - c_in))
            u, spare = ping[:b], pong[:b]
            torch.matmul(first_in, xc.reshape(b, k_in, rest * pixels), out=u.view(b, sizes[0], -1))
            for i in range(1, len(sizes)):
                outer = math.prod(sizes[:i])
                m = scaled_last if i == len(sizes) - 1 else hs[i]
                torch.matmul(m, u.view(b, outer, sizes[i], -1), out=spare.view(b, outer, sizes[i], -1))
                u, spare = spare, u
            k = kept[:b]
            torch.abs(u, out=k).sub_(threshold).clamp_(min=0)
            u.sigmoid_().sub_(0.5).mul_(k)
            # Inverse: factors in reverse order, 1/sqrt(n) on the last (smallest) step.
            for i in range(len(sizes) - 1, 0, -1):
                outer = math.prod(sizes[:i])
                torch.matmul(hs[i], u.view(b, outer, sizes[i], -1), out=spare.view(b, outer, sizes[i], -1))
                u, spare = spare, u
            dest = out[start : start + b].view(b, k_out, rest * pixels)
            torch.matmul(first_out, u.view(b, sizes[0], rest * pixels), out=dest)
        return out[:, :c_out].reshape(n_img, c_out, h, w)


def _export_factors(n: int, c_in: int, c_out: int) -> tuple[int, int]:
    """``(a, b)`` with ``a b = n`` for the export form: ``a = 1`` (dense) where that costs no more
    multiply-adds per pixel, else ``b`` near ``sqrt(n)``, preferring one that divides the channel counts
    (no padding, no crop)."""
    dense = n * (c_in + c_out)
    best, best_cost = (1, n), dense
    b = 2
    while b < n:
        a = n // b
        k_in, k_out = -(-c_in // b), -(-c_out // b)
        cost = a * k_in * b + n * b + k_out * a * b + k_out * b * b  # the four products, per pixel
        cost *= 1.0 if (c_in % b == 0 and c_out % b == 0) else 1.25  # a Pad or a Slice node more
        if cost < best_cost:
            best, best_cost = (a, b), cost
        b *= 2
    return best
