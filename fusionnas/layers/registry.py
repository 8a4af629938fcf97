"""Registry of channel-fusion operators (the swap point for a block's 1x1 convolutions).

Every fusion is an ``nn.Module`` built as ``factory(in_channels, out_channels,
**options)`` that maps (N, C_in, H, W) to (N, C_out, H, W): a drop-in for a
1x1 convolution. Adding an operator is one file in ``fusionnas/layers`` and
one ``@register_fusion("name")`` line.
"""
from __future__ import annotations

from typing import Callable, TypeVar

import torch
from torch import nn

from fusionnas.layers._checks import check_input, check_positive

__all__ = ["register_fusion", "create_fusion", "list_fusions", "PointwiseConv"]

FusionFactory = Callable[..., nn.Module]
F = TypeVar("F", bound=FusionFactory)

_FUSIONS: dict[str, FusionFactory] = {}


def register_fusion(name: str) -> Callable[[F], F]:
    """Class/function decorator that makes a fusion operator available as ``name``."""

    def decorator(factory: F) -> F:
        if name in _FUSIONS:
            raise ValueError(
                f"fusion operator {name!r} is already registered "
                f"(by {_FUSIONS[name].__name__}); pick another name"
            )
        _FUSIONS[name] = factory
        return factory

    return decorator


def list_fusions() -> list[str]:
    """Names of the registered fusion operators, sorted."""
    return sorted(_FUSIONS)


def create_fusion(kind: str, in_channels: int, out_channels: int, **options) -> nn.Module:
    """Build the fusion operator ``kind`` mapping ``in_channels`` to ``out_channels``."""
    try:
        factory = _FUSIONS[kind]
    except KeyError:
        raise ValueError(
            f"unknown fusion operator {kind!r}; known: {', '.join(list_fusions())}"
        ) from None
    return factory(in_channels, out_channels, **options)


@register_fusion("conv")
class PointwiseConv(nn.Conv2d):
    """The reference fusion: a dense 1x1 convolution (same parameters as ``nn.Conv2d``)."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = False) -> None:
        check_positive("in_channels", in_channels)
        check_positive("out_channels", out_channels)
        super().__init__(in_channels, out_channels, kernel_size=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        check_input(x, self.in_channels, type(self).__name__)
        return super().forward(x)
