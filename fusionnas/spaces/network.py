"""The network a MobileNetV2 space builds: stem, inverted-residual blocks, head, each a part.

:class:`FusionMobileNetV2` is torchvision's ``mobilenet_v2`` with pluggable
operators; :meth:`FusionMobileNetV2.parts` lists the modules it runs in order,
what forward, latency tables and summaries walk.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from fusionnas.spaces.blocks import ConvBNReLU6, FusionBN, InvertedResidual

__all__ = ["make_divisible", "BlockConfig", "Classify", "HeadPart", "FusionMobileNetV2", "walk_shapes"]


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of ``divisor``, never more than 10 % down (torchvision's rule)."""
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class BlockConfig(NamedTuple):
    """An ``InvertedResidual``'s constructor arguments, resolved from a space and an Arch."""

    in_channels: int
    out_channels: int
    stride: int
    expand_ratio: int
    kernel_size: int
    expand: str | None
    depthwise: str
    project: str


class Classify(nn.Module):
    """Global average pooling, flatten and the classifier: features (N, C, H, W) to logits."""

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1))


class HeadPart(nn.Module):
    """The network's last part: the head fusion (1x1 fusion, BN, ReLU6), then :class:`Classify`."""

    def __init__(self, head: nn.Module, classifier: nn.Module) -> None:
        super().__init__()
        self.head = head
        self.classify = Classify(classifier)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.classify(self.head(x))


class FusionMobileNetV2(nn.Module):
    """MobileNetV2 with pluggable operators: ``stem -> blocks -> head -> pool -> classifier``.

    ``stem``: 3x3 conv-BN-ReLU6; ``blocks``: one :class:`InvertedResidual` per
    config; ``head``: the final 1x1 fusion-BN-ReLU6; ``classifier``: dropout and
    linear. Initialised as torchvision does (fusions other than the conv keep
    their own initialisation).
    """

    def __init__(
        self,
        blocks: Sequence[BlockConfig],
        stem_channels: int = 32,
        stem_stride: int = 2,
        head_channels: int = 1280,
        head_fusion: str = "conv",
        num_classes: int = 1000,
        dropout: float = 0.2,
        input_shape: tuple[int, int, int] = (3, 224, 224),
    ) -> None:
        super().__init__()
        if not blocks:
            raise ValueError("blocks must hold at least one BlockConfig, got none")
        self.input_shape = tuple(input_shape)
        self.stem_stride = stem_stride
        self.stem = ConvBNReLU6(input_shape[0], stem_channels, 3, stem_stride)
        self.blocks = nn.ModuleList(InvertedResidual(*config) for config in blocks)
        self.head = FusionBN(head_fusion, blocks[-1].out_channels, head_channels)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(head_channels, num_classes))
        # Not registered as a submodule: it holds the model's own head and classifier, which
        # the state dict already has.
        object.__setattr__(self, "_head_part", HeadPart(self.head, self.classifier))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        for _, part in self.parts():
            x = part(x)
        return x

    def parts(self) -> list[tuple[str, nn.Module]]:
        """The network as the modules it runs in order: ``stem``, ``b0`` ... ``b{n-1}``, ``head``
        (the final fusion with pooling and classifier); what forward, latency tables and
        summaries walk. The head part holds the model's own modules, no copies."""
        return [("stem", self.stem), *((f"b{i}", b) for i, b in enumerate(self.blocks)),
                ("head", self._head_part)]

    def block_input_shapes(self, input_shape: Sequence[int] | None = None) -> list[tuple[int, int, int]]:
        """(C, H, W) entering each block, computed (every stride-s layer gives ceil(side / s))."""
        return self._shapes(input_shape)[:-1]

    def head_input_shape(self, input_shape: Sequence[int] | None = None) -> tuple[int, int, int]:
        """(C, H, W) entering the head."""
        return self._shapes(input_shape)[-1]

    def _shapes(self, input_shape: Sequence[int] | None) -> list[tuple[int, int, int]]:
        shape = self.input_shape if input_shape is None else tuple(input_shape)
        return walk_shapes(shape, self.stem_stride, [(b.in_channels, b.out_channels, b.stride) for b in self.blocks])


def walk_shapes(
    input_shape: Sequence[int], stem_stride: int, blocks: Sequence[tuple[int, int, int]]
) -> list[tuple[int, int, int]]:
    """(C, H, W) entering each (in, out, stride) block, then the head; a stride s gives ceil(side / s)."""
    _, h, w = input_shape
    h, w = -(-h // stem_stride), -(-w // stem_stride)
    shapes = []
    for c_in, _, stride in blocks:
        shapes.append((c_in, h, w))
        h, w = -(-h // stride), -(-w // stride)
    return shapes + [(blocks[-1][1], h, w)]
