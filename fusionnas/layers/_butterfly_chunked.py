"""The butterfly's CPU path: all stages a chunk of images at a time, with a backward that recomputes.

An autograd function over the weights of
:class:`~fusionnas.layers.butterfly.ButterflyPointwise` (see its **Speed** note).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

__all__ = ["ChunkedButterfly"]


def _pad_channels(y: torch.Tensor, width: int) -> torch.Tensor:
    """Zero-pad (B, C, P) to ``width`` channels (no copy when there is nothing to pad)."""
    return y if y.shape[1] == width else F.pad(y, (0, 0, 0, width - y.shape[1]))


def _digit_first(y: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """View (B, k_in G, P) as (B, G, k_in, P): the digit a stage mixes leads the channel index."""
    groups, _, k_in = weight.shape
    return y.view(y.shape[0], k_in, groups, y.shape[-1]).transpose(1, 2)


class ChunkedButterfly(torch.autograd.Function):
    """All stages on (N, C_in, P), a chunk of images at a time (the CPU path, with or without autograd).

    A chunk's intermediates stay in cache and a stage's GEMM reads them through
    a strided view (no copy for a chunk of one image); the last stage writes
    straight into the output. Only the input is saved: backward recomputes a
    chunk's intermediates, so it too makes one pass over input, output
    gradient and input gradient.
    """

    @staticmethod
    def forward(ctx, x, width_in, out_channels, step, *weights):  # noqa: D102
        n_img, c_in, pixels = x.shape
        out = x.new_empty(n_img, out_channels, pixels)
        for start in range(0, n_img, step):
            y = _pad_channels(x[start : start + step], width_in)
            b = y.shape[0]
            for s, weight in enumerate(weights):
                groups, k_out, _ = weight.shape
                direct = s == len(weights) - 1 and groups * k_out == out_channels
                dst = out[start : start + b].view(b, groups, k_out, pixels) if direct else None
                y = torch.matmul(weight, _digit_first(y, weight), out=dst).view(b, groups * k_out, pixels)
            if not direct:  # the crop of an expansion
                out[start : start + b] = y[:, :out_channels]
        ctx.save_for_backward(x, *weights)
        ctx.width_in, ctx.step = width_in, step
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):  # noqa: D102
        x, *weights = ctx.saved_tensors
        n_img, c_in, pixels = x.shape
        grad_out = grad_out.contiguous()
        grad_x = torch.empty_like(x) if ctx.needs_input_grad[0] else None
        grad_w = [torch.zeros_like(w) if ctx.needs_input_grad[4 + s] else None
                  for s, w in enumerate(weights)]
        width_out = weights[-1].shape[0] * weights[-1].shape[1]
        for start in range(0, n_img, ctx.step):
            acts = [_pad_channels(x[start : start + ctx.step], ctx.width_in)]
            b = acts[0].shape[0]
            for weight in weights[:-1]:
                y = torch.matmul(weight, _digit_first(acts[-1], weight))
                acts.append(y.view(b, weight.shape[0] * weight.shape[1], pixels))
            grad = _pad_channels(grad_out[start : start + b], width_out)
            for s in range(len(weights) - 1, -1, -1):
                weight = weights[s]
                groups, k_out, k_in = weight.shape
                grad = grad.view(b, groups, k_out, pixels)
                if grad_w[s] is not None:
                    act_t = _digit_first(acts[s], weight).transpose(-1, -2)  # (B, G, P, k_in)
                    grad_w[s] += torch.matmul(grad, act_t).sum(0)
                if s == 0 and grad_x is None:
                    break
                grad = torch.matmul(weight.transpose(1, 2), grad).transpose(1, 2)  # (B, k_in, G, P)
                if s > 0:
                    grad = grad.reshape(b, k_in * groups, pixels)
                elif ctx.width_in == c_in:
                    grad_x[start : start + b].view(b, k_in, groups, pixels).copy_(grad)
                else:
                    grad_x[start : start + b] = grad.reshape(b, k_in * groups, pixels)[:, :c_in]
        return grad_x, None, None, None, *grad_w
