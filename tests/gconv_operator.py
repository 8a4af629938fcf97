"""A fusion operator from outside fusionnas, in one file: a grouped 1x1 convolution.

Used by tests/test_plugin_operator.py as a study file's plugin. It is built
from ``nn.Conv2d``, which fvcore counts and ONNX exports as it is, so it needs
no FLOP handle and no export form.
"""
from torch import nn

from fusionnas.layers import register_fusion


@register_fusion("gconv", letter="g")
class GroupedPointwise(nn.Conv2d):
    """1x1 conv in ``groups`` groups (4 where both widths allow it, else dense): ``C_in C_out / groups`` MACs per pixel."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        groups = 4 if in_channels % 4 == 0 and out_channels % 4 == 0 else 1
        super().__init__(in_channels, out_channels, kernel_size=1, groups=groups, bias=False)
