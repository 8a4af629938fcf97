"""The native kernels as torch custom operators (``torch.ops.fusionnas.*``).

Registered through :mod:`torch.library`, so autograd and ``torch.compile``
(which sees each as one opaque op, shapes from its fake kernel) use them. The
functions of this module are what the layers call: where nothing needs the
dispatcher (no autograd, not compiling) they call the kernel directly, since
the custom-op dispatch costs ~20 us a call, as much as a small layer's work.
CPU float32 only: the layers call them where :func:`usable` holds and run
their reference forms elsewhere.
"""
from __future__ import annotations

import ctypes

import torch

from fusionnas.kernels._native import library

__all__ = ["usable", "fwht", "wht_pointwise", "butterfly", "wht2d", "wht2d_supported", "RELU6"]

RELU6 = 1  # the fused activation code of the kernels (0: none)


def usable(x: torch.Tensor) -> bool:
    """Whether the kernels can run on ``x``: CPU float32 and the library loaded."""
    return x.is_cpu and x.dtype is torch.float32 and _loaded()


@torch.compiler.assume_constant_result  # torch.compile need not trace the loader (file checks, ctypes)
def _loaded() -> bool:
    return library() is not None


def _dispatch(*tensors: torch.Tensor | None) -> bool:
    """Whether a call must go through the registered op: autograd records it, or torch.compile traces it."""
    if torch.compiler.is_compiling():
        return True
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _threads() -> int:
    return torch.get_num_threads()


# ---- fwht -----------------------------------------------------------------------------------------

def fwht(x: torch.Tensor) -> torch.Tensor:
    """Unnormalised FWHT of the middle dim of an (L, n, R) tensor (n a power of two)."""
    return _fwht_op(x) if _dispatch(x) else _fwht(x)


@torch.library.custom_op("fusionnas::fwht", mutates_args=())
def _fwht_op(x: torch.Tensor) -> torch.Tensor:
    return _fwht(x)


def _fwht(x: torch.Tensor) -> torch.Tensor:
    x = x.contiguous()
    y = torch.empty_like(x)
    lead, n, trail = x.shape
    library().fn_fwht(_ptr(x), _ptr(y), lead, n, trail, _threads())
    return y


@_fwht_op.register_fake
def _(x):
    return torch.empty_like(x)


_fwht_op.register_autograd(lambda ctx, grad: _fwht_op(grad))  # H is symmetric: the backward is the transform


# ---- WHT channel fusion ---------------------------------------------------------------------------

def wht_pointwise(x: torch.Tensor, coef: torch.Tensor, threshold: torch.Tensor, out_scale: torch.Tensor,
                  out_shift: torch.Tensor | None = None, act: int = 0) -> torch.Tensor:
    """The WHT fusion layer on (N, C_in, H, W): ``act(out_scale * crop(H s(coef * H pad(x))) + out_shift)``.

    ``coef`` and ``threshold`` (>= 0) have n entries (n a power of two >= both
    channel counts); ``out_scale`` and ``out_shift`` one per output channel.
    Differentiable in x, coef and threshold where there is no shift and no activation.
    """
    if _dispatch(x, coef, threshold, out_scale, out_shift):
        return _wht_pointwise_op(x, coef, threshold, out_scale, out_shift, act)
    return _wht_pointwise(x, coef, threshold, out_scale, out_shift, act)


@torch.library.custom_op("fusionnas::wht_pointwise", mutates_args=())
def _wht_pointwise_op(x: torch.Tensor, coef: torch.Tensor, threshold: torch.Tensor, out_scale: torch.Tensor,
                      out_shift: torch.Tensor | None = None, act: int = 0) -> torch.Tensor:
    return _wht_pointwise(x, coef, threshold, out_scale, out_shift, act)


def _wht_pointwise(x, coef, threshold, out_scale, out_shift, act):
    n = coef.shape[0]
    if n & (n - 1) or n < max(x.shape[1], out_scale.shape[0]) or threshold.shape[0] != n:
        raise ValueError(f"wht_pointwise needs coef and threshold of one length n, a power of two >= the channels "
                         f"({x.shape[1]} in, {out_scale.shape[0]} out), got {n} and {threshold.shape[0]}")
    x = x.contiguous()
    n_img, c_in, h, w = x.shape
    c_out = out_scale.shape[0]
    y = x.new_empty(n_img, c_out, h, w)
    shift = None if out_shift is None else out_shift.contiguous()
    library().fn_wht_pointwise(_ptr(x), _ptr(y), n_img, c_in, c_out, h * w, coef.shape[0], _ptr(coef.contiguous()),
                               _ptr(threshold.contiguous()), _ptr(out_scale.contiguous()), _ptr(shift), act,
                               _threads())
    return y


@_wht_pointwise_op.register_fake
def _(x, coef, threshold, out_scale, out_shift=None, act=0):
    return x.new_empty(x.shape[0], out_scale.shape[0], x.shape[2], x.shape[3])


@torch.library.custom_op("fusionnas::wht_pointwise_backward", mutates_args=())
def _wht_pointwise_backward_op(grad: torch.Tensor, x: torch.Tensor, coef: torch.Tensor, threshold: torch.Tensor,
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


@_wht_pointwise_backward_op.register_fake
def _(grad, x, coef, threshold, out_scale):
    return torch.empty_like(x), coef.new_empty(coef.shape), coef.new_empty(coef.shape)


def _wht_setup(ctx, inputs, output):
    x, coef, threshold, out_scale, out_shift, act = inputs
    if act != 0 or out_shift is not None:
        raise NotImplementedError("fusionnas::wht_pointwise differentiates only without out_shift and act")
    ctx.save_for_backward(x, coef, threshold, out_scale)


def _wht_backward(ctx, grad):
    x, coef, threshold, out_scale = ctx.saved_tensors
    grad_x, grad_coef, grad_threshold = _wht_pointwise_backward_op(grad, x, coef, threshold, out_scale)
    return grad_x, grad_coef, grad_threshold, None, None, None


_wht_pointwise_op.register_autograd(_wht_backward, setup_context=_wht_setup)


# ---- butterfly ------------------------------------------------------------------------------------

def butterfly(x: torch.Tensor, weights: list[torch.Tensor], width_in: int, out_channels: int,
              out_scale: torch.Tensor | None = None, out_shift: torch.Tensor | None = None,
              act: int = 0) -> torch.Tensor:
    """The butterfly stages on (N, C_in, H, W) in one pass per pixel strip (inference)."""
    if torch.compiler.is_compiling():
        return _butterfly_op(x, weights, width_in, out_channels, out_scale, out_shift, act)
    return _butterfly(x, weights, width_in, out_channels, out_scale, out_shift, act)


@torch.library.custom_op("fusionnas::butterfly", mutates_args=())
def _butterfly_op(x: torch.Tensor, weights: list[torch.Tensor], width_in: int, out_channels: int,
                  out_scale: torch.Tensor | None = None, out_shift: torch.Tensor | None = None,
                  act: int = 0) -> torch.Tensor:
    return _butterfly(x, weights, width_in, out_channels, out_scale, out_shift, act)


def _butterfly(x, weights, width_in, out_channels, out_scale, out_shift, act):
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


@_butterfly_op.register_fake
def _(x, weights, width_in, out_channels, out_scale=None, out_shift=None, act=0):
    return x.new_empty(x.shape[0], out_channels, x.shape[2], x.shape[3])


# ---- 2D WHT over tiles ----------------------------------------------------------------------------

def wht2d(x: torch.Tensor, coef: torch.Tensor, threshold: torch.Tensor, stride: int, out_norm: float) -> torch.Tensor:
    """WHT2d / HadamardDepthwise on (N, C, H, W) (inference); coef and threshold (>= 0) are (C or 1, t_h, t_w)."""
    if torch.compiler.is_compiling():
        return _wht2d_op(x, coef, threshold, stride, out_norm)
    return _wht2d(x, coef, threshold, stride, out_norm)


@torch.library.custom_op("fusionnas::wht2d", mutates_args=())
def _wht2d_op(x: torch.Tensor, coef: torch.Tensor, threshold: torch.Tensor, stride: int, out_norm: float) -> torch.Tensor:
    return _wht2d(x, coef, threshold, stride, out_norm)


def _wht2d(x, coef, threshold, stride, out_norm):
    x = x.contiguous()
    n_img, c, h, w = x.shape
    groups, th, tw = coef.shape
    y = x.new_empty(n_img, c, -(-h // stride), -(-w // stride))
    library().fn_wht2d(_ptr(x), _ptr(y), n_img, c, h, w, th, tw, stride, _ptr(coef.contiguous()),
                       _ptr(threshold.contiguous()), int(groups == 1 and c != 1), out_norm, _threads())
    return y


@_wht2d_op.register_fake
def _(x, coef, threshold, stride, out_norm):
    return x.new_empty(x.shape[0], x.shape[1], -(-x.shape[2] // stride), -(-x.shape[3] // stride))


def wht2d_supported(tile: tuple[int, int], stride: int) -> bool:
    """Whether the kernel covers a tile and stride (stride 2 needs tiles of at least 2 x 2)."""
    return stride == 1 or min(tile) >= 2


