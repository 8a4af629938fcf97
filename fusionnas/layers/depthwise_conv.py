"""The conv + batch norm + ReLU6 unit, and MobileNetV2's depthwise conv built from it.

Training on a CPU, the depthwise unit takes channels-last input where its block allows it and
computes its weight gradient by shape (:func:`depthwise_conv2d`); inference keeps PyTorch's conv.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fusionnas.layers.registry import register_depthwise

__all__ = ["ConvBNReLU6", "CHANNELS_LAST_DEPTHWISE_TRAINING", "FAST_DEPTHWISE_WEIGHT_GRADIENT",
           "depthwise_conv2d", "weight_gradient_method"]

# oneDNN's depthwise conv on a CPU reorders an NCHW input into a blocked layout and back, in
# both passes; on channels-last input it does not: a training step of the unit is 1.1-2.2x
# faster (one thread, batch 32). Its output stays channels-last, which a 1x1 conv takes as it
# is but the transform layers copy back, so blocks turn it on only before a conv projection:
# whole networks' steps 0.97-1.59x, geometric mean 1.07x (benchmarks/train_step.py, docs/benchmarks.md "Training step").
# A switch so that the benchmark can compare.
CHANNELS_LAST_DEPTHWISE_TRAINING = True

# oneDNN's CPU kernel for a depthwise conv's weight gradient covers kernels of at most 3x3 on
# maps no smaller than the kernel; every other case (all 5x5 kernels, 2x2 maps) falls back to
# one small GEMM per channel, 1.2-5.4x slower than the alternatives in weight_gradient_method
# (the gradient alone, one thread, batch 32); whole networks' steps 1.02-1.42x faster with them
# (benchmarks/train_step.py, docs/benchmarks.md "Training step"). A switch so that the benchmark can compare.
FAST_DEPTHWISE_WEIGHT_GRADIENT = True


class ConvBNReLU6(nn.Sequential):
    """Conv (no bias), batch norm, ReLU6: torchvision's ``Conv2dNormActivation``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 stride: int = 1, groups: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, (kernel_size - 1) // 2,
                      groups=groups, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU6(inplace=True),
        )
        self.signature = (
            f"conv(in={in_channels},out={out_channels},k={kernel_size},s={stride},g={groups},act=relu6)"
        )
        self.is_depthwise = groups > 1 and groups == in_channels == out_channels
        # Depthwise units only; a block turns it off where its next operator wants NCHW.
        self.train_channels_last = self.is_depthwise

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        # Training on a CPU only: inference paths (latency tables, export) keep their layout.
        if not (self.is_depthwise and self.training and x.device.type == "cpu"):
            return super().forward(x)
        if self.train_channels_last and CHANNELS_LAST_DEPTHWISE_TRAINING:
            x = x.contiguous(memory_format=torch.channels_last)  # the output stays channels-last
        conv, bn, act = self
        if FAST_DEPTHWISE_WEIGHT_GRADIENT and torch.is_grad_enabled():
            y = depthwise_conv2d(x, conv.weight, conv.stride[0], conv.padding[0])
        else:
            y = conv(x)
        return act(bn(y))


@register_depthwise("conv", letter="c")
def depthwise_conv(channels: int, kernel_size: int, stride: int) -> nn.Module:
    """MobileNetV2's depthwise k x k conv with batch norm and ReLU6."""
    return ConvBNReLU6(channels, channels, kernel_size, stride, groups=channels)


def weight_gradient_method(height: int, width: int, kernel_size: int, stride: int) -> str:
    """How :func:`depthwise_conv2d` computes its weight gradient for a ``height x width`` input.

    ``"native"``: oneDNN's depthwise kernel, where it applies (kernels of at most 3x3
    on maps at least that large, 4x4 when strided); ``"grouped"`` on maps of at most
    16 pixels: the gradient as one grouped conv of the input with the output gradient
    (1.2-5.4x faster than the native fallback); ``"channels_last"`` elsewhere: the native
    fallback on channels-last copies (2.0-3.4x faster). Measured with one thread, batch
    32, 96 and 384 channels, maps 2-16 (docs/decisions.md "Training on a CPU").
    """
    if kernel_size <= 3 and min(height, width) >= (kernel_size if stride == 1 else 4):
        return "native"
    return "grouped" if height * width <= 16 else "channels_last"


def depthwise_conv2d(x: torch.Tensor, weight: torch.Tensor, stride: int, padding: int) -> torch.Tensor:
    """``F.conv2d(x, weight, stride=stride, padding=padding, groups=channels)`` with a faster
    weight gradient on a CPU (:func:`weight_gradient_method`); the same values and gradients."""
    return _DepthwiseConv.apply(x, weight, stride, padding)


class _DepthwiseConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, stride: int, padding: int) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding = stride, padding
        return F.conv2d(x, weight, None, stride, padding, groups=x.shape[1])

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        stride, padding, groups = ctx.stride, ctx.padding, x.shape[1]
        method = weight_gradient_method(x.shape[2], x.shape[3], weight.shape[-1], stride)
        mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1] and method == "native", False]
        grad_x, grad_w, _ = torch.ops.aten.convolution_backward(
            grad, x, weight, None, [stride] * 2, [padding] * 2, [1, 1], False, [0, 0], groups, mask)
        if ctx.needs_input_grad[1] and method == "grouped":
            grad_w = _grouped_weight_gradient(x, grad, weight.shape[-1], stride, padding)
        elif ctx.needs_input_grad[1] and method == "channels_last":
            last = torch.channels_last
            grad_w = torch.ops.aten.convolution_backward(
                grad.contiguous(memory_format=last), x.contiguous(memory_format=last), weight, None,
                [stride] * 2, [padding] * 2, [1, 1], False, [0, 0], groups, [False, True, False])[1]
        return grad_x, grad_w, None, None


def _grouped_weight_gradient(x: torch.Tensor, grad: torch.Tensor, kernel_size: int, stride: int,
                             padding: int) -> torch.Tensor:
    """``dL/dw[c, 0, a, b] = sum_(n, i, j) x_pad[n, c, s i + a, s j + b] grad[n, c, i, j]``: a conv of
    each channel's padded maps (images as its input channels) with that channel's output gradient
    as the kernel, dilated by the stride; one grouped conv for all channels."""
    n, c = x.shape[:2]
    out_h, out_w = grad.shape[2:]
    span_h, span_w = stride * (out_h - 1) + kernel_size, stride * (out_w - 1) + kernel_size
    padded = F.pad(x, (padding,) * 4)[:, :, :span_h, :span_w]  # (N, C, span_h, span_w)
    images = padded.transpose(0, 1).reshape(1, c * n, span_h, span_w)
    kernels = grad.transpose(0, 1).reshape(c, n, out_h, out_w)
    return F.conv2d(images, kernels, dilation=stride, groups=c).reshape(c, 1, kernel_size, kernel_size)
