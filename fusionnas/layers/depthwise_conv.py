"""The conv + batch norm + ReLU6 unit, and MobileNetV2's depthwise conv built from it."""
from __future__ import annotations

import torch
from torch import nn

from fusionnas.layers.registry import register_depthwise

__all__ = ["ConvBNReLU6", "CHANNELS_LAST_DEPTHWISE_TRAINING"]

# oneDNN's depthwise conv on a CPU reorders an NCHW input into a blocked layout and back, in
# both passes; on channels-last input it does not: a training step of the unit is 1.1-2.2x
# faster (one thread, batch 32). Its output stays channels-last, which a 1x1 conv takes as it
# is but the transform layers copy back, so blocks turn it on only before a conv projection:
# whole networks' steps 0.97-1.59x, geometric mean 1.07x (benchmarks/train_step.py, README).
# A switch so that the benchmark can compare.
CHANNELS_LAST_DEPTHWISE_TRAINING = True


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
        # Depthwise units only; a block turns it off where its next operator wants NCHW.
        self.train_channels_last = groups > 1 and groups == in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        # Training on a CPU only: inference paths (latency tables, export) keep their layout.
        if self.train_channels_last and self.training and x.device.type == "cpu" and CHANNELS_LAST_DEPTHWISE_TRAINING:
            x = x.contiguous(memory_format=torch.channels_last)  # the output stays channels-last
        return super().forward(x)


@register_depthwise("conv", letter="c")
def depthwise_conv(channels: int, kernel_size: int, stride: int) -> nn.Module:
    """MobileNetV2's depthwise k x k conv with batch norm and ReLU6."""
    return ConvBNReLU6(channels, channels, kernel_size, stride, groups=channels)
