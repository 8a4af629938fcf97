"""Per-part costs of an architecture (stem, every block, head, classifier) and their table."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import nn

from fusionnas.evaluators.cost import count_flops, count_params
from fusionnas.spaces.arch import short_form
from fusionnas.spaces.network import Classify

if TYPE_CHECKING:
    from fusionnas.spaces.arch import Arch
    from fusionnas.spaces.mobilenetv2 import MobileNetV2Space

__all__ = ["PartCost", "summarize", "format_summary", "bn_statistics"]


@dataclass(frozen=True)
class PartCost:
    """What one part of a built model costs at batch 1.

    Attributes:
        name: ``stem``, ``b0`` ... ``b16``, ``head`` or ``classifier``.
        operators: short form of its operators, e.g. ``e6 k3 wht/dw/bft``.
        input_shape: (C, H, W) entering the part.
        out_channels: channels leaving it.
        stride: spatial stride.
        params: parameters (all trainable).
        bn_statistics: BatchNorm running means and variances (Keras counts
            them as non-trainable parameters; PyTorch does not).
        flops: fvcore FLOPs as :func:`~fusionnas.evaluators.count_flops` counts them.
    """

    name: str
    operators: str
    input_shape: tuple[int, int, int]
    out_channels: int
    stride: int
    params: int
    bn_statistics: int
    flops: int


def bn_statistics(module: nn.Module) -> int:
    """Number of BatchNorm running statistics (means and variances) in ``module``."""
    return sum(
        m.running_mean.numel() + m.running_var.numel()
        for m in module.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None
    )


def summarize(space: MobileNetV2Space, arch: Arch, num_classes: int | None = None) -> list[PartCost]:
    """Costs of stem, blocks, head and classifier of ``space.build(arch)``; they add up to the model's."""
    model = space.build(arch, num_classes=num_classes)
    block_shapes = model.block_input_shapes()
    head_shape = model.head_input_shape()
    parts: list[tuple[str, str, nn.Module, tuple[int, int, int], int, int]] = [
        ("stem", "conv3x3", model.stem, tuple(space.input_shape), space.stem_channels, model.stem_stride)
    ]
    for i, (block, shape) in enumerate(zip(model.blocks, block_shapes)):
        operators = short_form(block.expand_ratio, block.kernel_size, *block.operators)
        parts.append((f"b{i}", operators, block, shape, block.out_channels, block.stride))
    parts.append(("head", model.head.kind, model.head, head_shape, space.head_channels, 1))
    pooled = Classify(model.classifier)
    classes = model.classifier[-1].out_features
    parts.append(("classifier", "pool+linear", pooled, (space.head_channels, *head_shape[1:]), classes, 1))
    return [
        PartCost(name, operators, shape, out, stride, count_params(module), bn_statistics(module),
                 count_flops(module, (1, *shape)))
        for name, operators, module, shape, out, stride in parts
    ]


def format_summary(parts: list[PartCost]) -> str:
    """A plain-text table of ``parts`` with a total row."""
    header = f"{'part':<11}{'operators':<24}{'channels':>11}{'s':>3}{'input':>12}{'params':>12}{'FLOPs':>14}"
    lines = [header, "-" * len(header)]
    for p in parts:
        channels = f"{p.input_shape[0]}->{p.out_channels}"
        side = f"{p.input_shape[1]}x{p.input_shape[2]}"
        lines.append(f"{p.name:<11}{p.operators:<24}{channels:>11}{p.stride:>3}{side:>12}"
                     f"{p.params:>12,}{p.flops:>14,}")
    lines.append("-" * len(header))
    params, flops = sum(p.params for p in parts), sum(p.flops for p in parts)
    lines.append(f"{'total':<61}{params:>12,}{flops:>14,}")
    return "\n".join(lines)
