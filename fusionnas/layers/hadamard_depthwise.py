"""Multiplication-free depthwise operator from the Hadamard transform (seed 000)."""
from __future__ import annotations

from fusionnas.layers.fwht import FWHT_FLOP_HANDLES, next_power_of_two
from fusionnas.layers.registry import register_depthwise
from fusionnas.layers.wht import WHT2d

__all__ = ["HadamardDepthwise", "hadamard_depthwise"]


class HadamardDepthwise(WHT2d):
    """Drop-in for a 3x3 depthwise convolution built from 2D Walsh-Hadamard tiles.

    Seed 000 describes "multiplication-free 3x3 depthwise operators from the
    2x2 Hadamard" only in its abstract. Our decision (PAPERS.md): the 2D WHT
    layer with its own scale and thresholds per channel, as a depthwise conv
    has its own kernel per channel. The transform is add/sub only; the
    per-coefficient scale and threshold are the only multiplications.

    Tiles are ``block x block`` (default 4: a receptive field comparable to a
    3x3 kernel, 32 parameters per channel, independent of the map size);
    ``stride=2`` average-pools 2x2 as a strided depthwise conv would halve
    the map.
    """

    def __init__(self, channels: int, stride: int = 1, block: int = 4) -> None:
        super().__init__(channels, size=block, stride=stride, shared=False)


@register_depthwise("hadamard", letter="h", flop_handles=FWHT_FLOP_HANDLES)
def hadamard_depthwise(channels: int, kernel_size: int, stride: int) -> HadamardDepthwise:
    """Seed 000's multiplication-free depthwise operator on tiles of next_power_of_two(k).

    k=3 gives 4x4 tiles, k=5 8x8. Its smooth thresholding is the non-linearity,
    so no batch norm or ReLU6 follows (nothing to fold into a multiply-free op).
    """
    return HadamardDepthwise(channels, stride=stride, block=next_power_of_two(kernel_size))
