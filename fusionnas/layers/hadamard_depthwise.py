"""Multiplication-free depthwise operator from the Hadamard transform (seed 000)."""
from __future__ import annotations

from fusionnas.layers.wht import WHT2d

__all__ = ["HadamardDepthwise"]


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
