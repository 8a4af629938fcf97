"""2D Walsh-Hadamard layer over the spatial dims: tiles transformed, scaled, thresholded and inverted."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from fusionnas.kernels import onnx_nodes
from fusionnas.kernels import torch_ops as native
from fusionnas.layers._checks import check_input, check_positive, fast_path_allowed, is_tracing
from fusionnas.layers._folded import Folded
from fusionnas.layers.fwht import fwht, hadamard, next_power_of_two
from fusionnas.layers.thresholds import SmoothThreshold, smooth_threshold, smooth_threshold_of_scaled_

__all__ = ["WHT2d"]


def _tile_extent(size: int, tile: int, needed: int) -> tuple[int, int, int]:
    """(input pixels per tile, output pixels per tile, tiles) along one axis of :meth:`WHT2d._forward_dense`.

    A map no larger than its tile is one tile, unpadded; its output keeps the ``needed``
    pixels (the stride's pooling windows reach into the padding: a 1-pixel map pooled
    by 2 averages its pixel with the transform's output at the padded one). A larger
    map is padded to whole tiles.
    """
    if size <= tile:
        return size, min(tile, needed), 1
    return tile, tile, math.ceil(size / tile)


def _tile_basis(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``basis[(p, q), (i, j)] = rows[p, i] cols[q, j] / sqrt(t_h t_w)``: coefficient (p, q) of
    pixel (i, j) of an orthonormal 2D WHT, cropped to the pixels given."""
    coefficients = rows.shape[0] * cols.shape[0]
    basis = rows[:, None, :, None] * cols[None, :, None, :]
    return basis.reshape(coefficients, -1) * coefficients**-0.5


class WHT2d(nn.Module):
    """2D Walsh-Hadamard layer over the spatial dims (seed 002), optionally strided.

    Each channel's map is zero-padded to a multiple of the tile (``size``,
    rounded up to powers of two) and every tile goes through a separable 2D
    WHT, a trainable per-coefficient scale, smooth thresholding and the
    inverse; stride 2 average-pools the result; the output is cropped back to
    the input size (divided by the stride). The scale and thresholds have one
    value per tile coefficient, shared by all channels (``shared=True``, the
    seed's layer: 2 t_h t_w parameters) or one set per channel (2 C t_h t_w),
    which makes the layer a depthwise operator (see ``HadamardDepthwise``).

    A tile as large as the feature map gives the seed's global 2D-WHT layer.
    FLOPs per tile: 2 t_h t_w (log2 t_h + log2 t_w) add/subs, 6 t_h t_w
    element-wise, plus the pooling.
    """

    def __init__(
        self,
        channels: int,
        size: int | tuple[int, int],
        stride: int = 1,
        shared: bool = True,
    ) -> None:
        super().__init__()
        check_positive("channels", channels)
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        tile_h, tile_w = (size, size) if isinstance(size, int) else size
        check_positive("size", tile_h)
        check_positive("size", tile_w)
        self.channels = channels
        self.tile = (next_power_of_two(tile_h), next_power_of_two(tile_w))
        self.stride = stride
        self.shared = shared
        param_shape = (1 if shared else channels, 1, self.tile[0], 1, self.tile[1])
        self.scale = nn.Parameter(torch.ones(param_shape))
        self.smooth = SmoothThreshold(param_shape)
        self._folded = Folded()

    def extra_repr(self) -> str:  # noqa: D102
        return f"{self.channels}, tile={self.tile}, stride={self.stride}, shared={self.shared}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        check_input(x, self.channels, type(self).__name__)
        if torch.onnx.is_in_onnx_export() and not self.training:
            return self.export_forward(x)
        if is_tracing():
            return self._forward_reference(x)
        if fast_path_allowed(x) and native.usable(x) and native.wht2d_supported(self.tile, self.stride):
            return self._forward_native(x)
        return self._forward_dense(x)

    def native_node(self, x: torch.Tensor) -> torch.Tensor | None:
        """The layer as one ``fusionnas`` ONNX node while ``to_onnx(form="native")`` exports, else None."""
        if not native.wht2d_supported(self.tile, self.stride):
            return None
        (th, tw), groups = self.tile, self.scale.shape[0]
        norm = (th * tw) ** -0.5
        coef = self.scale.reshape(groups, th, tw) * norm
        threshold = self.smooth.threshold.reshape(groups, th, tw).abs()
        return onnx_nodes.wht2d_node(x, coef, threshold, self.stride, norm)

    def _forward_native(self, x: torch.Tensor) -> torch.Tensor:
        """Inference in the native kernel: each tile transformed, thresholded and inverted in registers."""
        (th, tw), groups = self.tile, self.scale.shape[0]
        norm = (th * tw) ** -0.5
        coef, threshold = self._folded((self.scale, self.smooth.threshold), lambda: (
            self.scale.reshape(groups, th, tw) * norm, self.smooth.threshold.reshape(groups, th, tw).abs()))
        return native.wht2d(x, coef, threshold, self.stride, norm)

    def _forward_dense(self, x: torch.Tensor) -> torch.Tensor:
        """The same function with each tile's 2D transform as one small dense GEMM (training and eval).

        The butterfly of :meth:`_forward_reference` makes 4 log2(t) passes over the map per
        transform, and pads a map smaller than its tile to the full tile: a 2x2 map in 8x8
        tiles transforms 16x the pixels it has. Here the transform of a tile is its Kronecker
        basis, cropped to the map where one tile covers an axis (the padding is zeros, so
        those basis columns never contribute), applied to all tiles at once: two GEMMs with
        ``t_h t_w`` columns, the tile regrouping their only copies, and a backward pass of
        GEMMs too. The FLOP counter keeps tracing the reference form, the transform's own count.
        """
        n_img, c, h, w = (int(d) for d in x.shape)
        (th, tw), coefficients = self.tile, self.tile[0] * self.tile[1]
        out_h, out_w = math.ceil(h / self.stride), math.ceil(w / self.stride)
        rows_in, rows_out, nh = _tile_extent(h, th, out_h * self.stride)
        cols_in, cols_out, nw = _tile_extent(w, tw, out_w * self.stride)
        if (nh * rows_in, nw * cols_in) != (h, w):
            x = F.pad(x, (0, nw * cols_in - w, 0, nh * rows_in - h))
        rows, cols = hadamard(th, x.dtype, x.device), hadamard(tw, x.dtype, x.device)
        to_coefficients = _tile_basis(rows[:, :rows_in], cols[:, :cols_in])  # (coefficients, pixels in)
        to_pixels = _tile_basis(rows[:, :rows_out], cols[:, :cols_out])  # (coefficients, pixels out)
        tiles = x.reshape(n_img, c, nh, rows_in, nw, cols_in).permute(0, 1, 2, 4, 3, 5)  # a copy if nw > 1
        z = tiles.reshape(n_img, c, nh * nw, rows_in * cols_in) @ to_coefficients.t()
        per_channel = (self.scale.shape[0], 1, coefficients)
        scale, threshold = self.scale.reshape(per_channel), self.smooth.threshold.reshape(per_channel)
        if fast_path_allowed(x):  # z is this call's own tensor
            s = smooth_threshold_of_scaled_(z, scale, threshold)
        else:
            s = smooth_threshold(z * scale, threshold)
        y = (s @ to_pixels).reshape(n_img, c, nh, nw, rows_out, cols_out).permute(0, 1, 2, 4, 3, 5)
        y = y.reshape(n_img, c, nh * rows_out, nw * cols_out)
        if self.stride == 2:
            y = F.avg_pool2d(y, 2, ceil_mode=True)
        return y if tuple(y.shape[2:]) == (out_h, out_w) else y[:, :, :out_h, :out_w]

    def export_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The same function in few ONNX nodes, for any batch (what ``fusionnas export`` traces).

        A tile's 2D WHT is the same linear map in every channel, so the
        channels are folded into the batch and the forward transform is one
        plain conv with a ``t_h x t_w`` kernel and stride (``t_h t_w`` outputs:
        one per coefficient), a single GEMM for all channels; the per-channel
        coefficient scale is one Mul, smooth thresholding 5 nodes; the inverse
        a 1x1 conv back to pixels and a DepthToSpace (a transposed conv where
        tiles are not square). Padding, pooling and the crop add nodes only
        where the shape needs them. On this project's CPU, in onnxruntime,
        this runs 1.3-4x faster than the traced reference form; the element-wise
        work at full resolution still makes it several times slower than a
        depthwise conv, which fuses its batch norm and activation into one node.
        """
        if (node := self.native_node(x)) is not None:
            return node
        n_img, c, h, w = (int(d) for d in x.shape)
        th, tw = self.tile
        ph, pw = math.ceil(h / th) * th, math.ceil(w / tw) * tw
        if (ph, pw) != (h, w):
            x = F.pad(x, (0, pw - w, 0, ph - h))
        coefficients = th * tw
        # basis[p, q, i, j] * norm = H[p, i] H[q, j] / sqrt(t_h t_w): coefficient (p, q) of pixel (i, j).
        basis = hadamard(th, x.dtype, x.device)[:, None, :, None] * hadamard(tw, x.dtype, x.device)[None, :, None, :]
        basis = basis.reshape(coefficients, 1, th, tw) * (th * tw) ** -0.5
        u = F.conv2d(x.reshape(-1, 1, ph, pw), basis, stride=(th, tw))
        per_channel = (-1, coefficients)
        scale = self.scale.reshape(per_channel).expand(c, coefficients).reshape(1, c * coefficients, 1, 1)
        threshold = self.smooth.threshold.reshape(per_channel).expand(c, coefficients).reshape(scale.shape)
        u = u.reshape(-1, c * coefficients, ph // th, pw // tw) * scale
        s = (torch.tanh(u) * torch.relu(u.abs() - threshold.abs())).reshape(-1, coefficients, ph // th, pw // tw)
        if th == tw:
            to_pixels = basis.reshape(coefficients, coefficients).t().reshape(coefficients, coefficients, 1, 1)
            y = F.pixel_shuffle(F.conv2d(s, to_pixels), th)
        else:
            y = F.conv_transpose2d(s, basis, stride=(th, tw))
        y = y.reshape(-1, c, ph, pw)
        if self.stride == 2:
            y = F.avg_pool2d(y, 2, ceil_mode=True)
        out_h, out_w = math.ceil(h / self.stride), math.ceil(w / self.stride)
        return y if tuple(y.shape[2:]) == (out_h, out_w) else y[:, :, :out_h, :out_w]

    def _forward_reference(self, x: torch.Tensor) -> torch.Tensor:
        """Differentiable, traceable form; the FLOP counter sees this one."""
        n_img, c, h, w = (int(d) for d in x.shape)
        th, tw = self.tile
        ph, pw = math.ceil(h / th) * th, math.ceil(w / tw) * tw
        if (ph, pw) != (h, w):
            x = F.pad(x, (0, pw - w, 0, ph - h))
        tiles = x.reshape(n_img, c, ph // th, th, pw // tw, tw)
        # Parameters are (C or 1, 1, t_h, 1, t_w): they broadcast over images and tiles.
        norm = (th * tw) ** -0.5
        z = fwht(fwht(tiles, dim=3), dim=5)
        s = self.smooth(z * (self.scale * norm))
        y = fwht(fwht(s, dim=3), dim=5) * norm
        y = y.reshape(n_img, c, ph, pw)
        if self.stride == 2:
            y = F.avg_pool2d(y, 2, ceil_mode=True)
        return y[:, :, : math.ceil(h / self.stride), : math.ceil(w / self.stride)]
