"""The conv + batch norm + ReLU6 unit, and MobileNetV2's depthwise conv built from it."""
from __future__ import annotations

from torch import nn

from fusionnas.layers.registry import register_depthwise

__all__ = ["ConvBNReLU6"]


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


@register_depthwise("conv", letter="c")
def depthwise_conv(channels: int, kernel_size: int, stride: int) -> nn.Module:
    """MobileNetV2's depthwise k x k conv with batch norm and ReLU6."""
    return ConvBNReLU6(channels, channels, kernel_size, stride, groups=channels)
