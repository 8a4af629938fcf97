"""The native kernels as torch custom operators (``torch.ops.fusionnas.*``).

Registered through :mod:`torch.library`, so eager mode, autograd and
``torch.compile`` (which sees each as one opaque op, shapes from its fake
kernel) all use them. CPU float32 only: the layers call them where
:func:`usable` holds and run their reference forms elsewhere.
"""
from __future__ import annotations

import ctypes

import torch

from fusionnas.kernels._native import library

__all__ = ["usable", "fwht", "wht_pointwise", "butterfly", "wht2d", "RELU6"]

RELU6 = 1  # the fused activation code of the kernels (0: none)


def usable(x: torch.Tensor) -> bool:
    """Whether the kernels can run on ``x``: CPU float32 and the library loaded."""
    return x.device.type == "cpu" and x.dtype == torch.float32 and library() is not None


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _threads() -> int:
    return torch.get_num_threads()


# ---- fwht -----------------------------------------------------------------------------------------

@torch.library.custom_op("fusionnas::fwht", mutates_args=())
def fwht(x: torch.Tensor) -> torch.Tensor:
    """Unnormalised FWHT of the middle dim of an (L, n, R) tensor (n a power of two)."""
    x = x.contiguous()
    y = torch.empty_like(x)
    lead, n, trail = x.shape
    library().fn_fwht(_ptr(x), _ptr(y), lead, n, trail, _threads())
    return y


@fwht.register_fake
def _(x):
    return torch.empty_like(x)


fwht.register_autograd(lambda ctx, grad: fwht(grad))  # H is symmetric: the backward is the transform


# ---- WHT channel fusion ---------------------------------------------------------------------------

@torch.library.custom_op("fusionnas::wht_pointwise", mutates_args=())
def wht_pointwise(x: torch.Tensor, coef: torch.Tensor, threshold: torch.Tensor, out_scale: torch.Tensor,
                  out_shift: torch.Tensor | None = None, act: int = 0) -> torch.Tensor:
    """The WHT fusion layer on (N, C_in, H, W): ``act(out_scale * crop(H s(coef * H pad(x))) + out_shift)``.

    ``coef`` and ``threshold`` (>= 0) have n entries (n a power of two >= both
    channel counts); ``out_scale`` and ``out_shift`` one per output channel.
    """
    x = x.contiguous()
    n_img, c_in, h, w = x.shape
    c_out = out_scale.shape[0]
    y = x.new_empty(n_img, c_out, h, w)
    shift = None if out_shift is None else out_shift.contiguous()
    library().fn_wht_pointwise(_ptr(x), _ptr(y), n_img, c_in, c_out, h * w, coef.shape[0], _ptr(coef.contiguous()),
                               _ptr(threshold.contiguous()), _ptr(out_scale.contiguous()), _ptr(shift), act,
                               _threads())
    return y


@wht_pointwise.register_fake
def _(x, coef, threshold, out_scale, out_shift=None, act=0):
    return x.new_empty(x.shape[0], out_scale.shape[0], x.shape[2], x.shape[3])


@torch.library.custom_op("fusionnas::wht_pointwise_backward", mutates_args=())
def wht_pointwise_backward(grad: torch.Tensor, x: torch.Tensor, coef: torch.Tensor, threshold: torch.Tensor,
                           out_scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of :func:`wht_pointwise` (no shift, no activation) for x, coef and threshold."""
    x, grad = x.contiguous(), grad.contiguous()
    n_img, c_in, h, w = x.shape
    grad_x = torch.empty_like(x)
    grad_coef, grad_threshold = coef.new_empty(coef.shape), coef.new_empty(coef.shape)
    library().fn_wht_pointwise_backward(_ptr(x), _ptr(grad), _ptr(grad_x), _ptr(grad_coef), _ptr(grad_threshold),
                                        n_img, c_in, out_scale.shape[0], h * w, coef.shape[0],
                                        _ptr(coef.contiguous()), _ptr(threshold.contiguous()),
                                        _ptr(out_scale.contiguous()), _threads())
    return grad_x, grad_coef, grad_threshold


@wht_pointwise_backward.register_fake
def _(grad, x, coef, threshold, out_scale):
    return torch.empty_like(x), coef.new_empty(coef.shape), coef.new_empty(coef.shape)


def _wht_setup(ctx, inputs, output):
    x, coef, threshold, out_scale, out_shift, act = inputs
    if act != 0 or out_shift is not None:
        raise NotImplementedError("fusionnas::wht_pointwise differentiates only without out_shift and act")
    ctx.save_for_backward(x, coef, threshold, out_scale)


def _wht_backward(ctx, grad):
    x, coef, threshold, out_scale = ctx.saved_tensors
    grad_x, grad_coef, grad_threshold = wht_pointwise_backward(grad, x, coef, threshold, out_scale)
    return grad_x, grad_coef, grad_threshold, None, None, None


wht_pointwise.register_autograd(_wht_backward, setup_context=_wht_setup)


# ---- butterfly ------------------------------------------------------------------------------------

@torch.library.custom_op("fusionnas::butterfly", mutates_args=())
def butterfly(x: torch.Tensor, weights: list[torch.Tensor], width_in: int, out_channels: int,
              out_scale: torch.Tensor | None = None, out_shift: torch.Tensor | None = None,
              act: int = 0) -> torch.Tensor:
    """The butterfly stages on (N, C_in, H, W) in one pass per pixel strip (inference)."""
    x = x.contiguous()
    n_img, c_in, h, w = x.shape
    y = x.new_empty(n_img, out_channels, h, w)
    weights = [weight.contiguous() for weight in weights]
    shape = (ctypes.c_int64 * (3 * len(weights)))(*(d for weight in weights for d in weight.shape))
    pointers = (ctypes.c_void_p * len(weights))(*(weight.data_ptr() for weight in weights))
    scale = None if out_scale is None else out_scale.contiguous()
    shift = None if out_shift is None else out_shift.contiguous()
    library().fn_butterfly(_ptr(x), _ptr(y), n_img, c_in, h * w, width_in, out_channels, len(weights), shape,
                           pointers, _ptr(scale), _ptr(shift), act, _threads())
    return y


@butterfly.register_fake
def _(x, weights, width_in, out_channels, out_scale=None, out_shift=None, act=0):
    return x.new_empty(x.shape[0], out_channels, x.shape[2], x.shape[3])


# ---- 2D WHT over tiles ----------------------------------------------------------------------------

@torch.library.custom_op("fusionnas::wht2d", mutates_args=())
def wht2d(x: torch.Tensor, coef: torch.Tensor, threshold: torch.Tensor, stride: int, out_norm: float) -> torch.Tensor:
    """WHT2d / HadamardDepthwise on (N, C, H, W) (inference); coef and threshold (>= 0) are (C or 1, t_h, t_w)."""
    x = x.contiguous()
    n_img, c, h, w = x.shape
    groups, th, tw = coef.shape
    y = x.new_empty(n_img, c, -(-h // stride), -(-w // stride))
    library().fn_wht2d(_ptr(x), _ptr(y), n_img, c, h, w, th, tw, stride, _ptr(coef.contiguous()),
                       _ptr(threshold.contiguous()), int(groups == 1 and c != 1), out_norm, _threads())
    return y


@wht2d.register_fake
def _(x, coef, threshold, stride, out_norm):
    return x.new_empty(x.shape[0], x.shape[1], -(-x.shape[2] // stride), -(-x.shape[3] // stride))


def wht2d_supported(tile: tuple[int, int], stride: int) -> bool:
    """Whether the kernel covers a tile and stride (stride 2 needs tiles of at least 2 x 2)."""
    return stride == 1 or min(tile) >= 2


