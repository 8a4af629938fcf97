"""Registry of the operators a search space can choose per block: fusions and depthwise operators.

A **fusion** replaces a block's 1x1 convolutions: an ``nn.Module`` built as
``factory(in_channels, out_channels)`` mapping (N, C_in, H, W) to
(N, C_out, H, W). A **depthwise** operator replaces the k x k depthwise
convolution: ``factory(channels, kernel_size, stride)``. Each registers once,
in its own module under ``fusionnas/layers`` (found without an import list,
see :mod:`fusionnas.layers`) or in a plugin, with everything the rest of the
system needs: its name, a one-letter code for tables, FLOP handles for the
operations fvcore cannot count, and an optional training-loss term::

    @register_fusion("gconv", letter="g")
    class GroupedPointwise(nn.Conv2d): ...
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch import nn

from fusionnas.errors import UserError
from fusionnas.layers._checks import check_input, check_positive

__all__ = [
    "OperatorSpec",
    "register_fusion",
    "register_depthwise",
    "create_fusion",
    "create_depthwise",
    "list_fusions",
    "list_depthwise",
    "operator_spec",
    "operator_specs",
    "operator_letters",
    "operator_flop_handles",
    "operator_loss",
    "PointwiseConv",
]

ROLES = ("fusion", "depthwise")
Factory = Callable[..., nn.Module]
F = TypeVar("F", bound=Factory)
FlopHandle = Callable[[list[Any], list[Any]], int]


@dataclass(frozen=True)
class OperatorSpec:
    """What the system knows of one registered operator.

    ``flop_handles`` maps an op name as fvcore sees it (``prim::PythonOp.<Function>``)
    to a counting handle, None for a deliberately free op; an operator built from
    modules fvcore already counts needs none. ``loss(module)`` is a term added to
    the training loss for every instance (weighted by the proxy budget).
    """

    name: str
    role: str
    factory: Factory
    letter: str
    flop_handles: Mapping[str, FlopHandle | None] = field(default_factory=dict)
    loss: Callable[[nn.Module], torch.Tensor] | None = None

    @property
    def module_type(self) -> type | None:
        """The class the factory builds, when the factory is a class."""
        return self.factory if isinstance(self.factory, type) else None


_OPERATORS: dict[tuple[str, str], OperatorSpec] = {}


def _register(role: str, name: str, letter: str, flop_handles: Mapping[str, FlopHandle | None] | None,
              loss: Callable[[nn.Module], torch.Tensor] | None) -> Callable[[F], F]:
    if not isinstance(letter, str) or len(letter) != 1 or not letter.isalpha():
        raise ValueError(f"operator {name!r} needs a one-letter code for tables, got letter={letter!r}")

    def decorator(factory: F) -> F:
        if (role, name) in _OPERATORS:
            raise ValueError(f"{role} operator {name!r} is already registered "
                             f"(by {_OPERATORS[role, name].factory.__name__}); pick another name")
        for spec in _OPERATORS.values():
            if spec.letter == letter and spec.name != name:
                raise ValueError(f"letter {letter!r} of operator {name!r} is taken by {spec.name!r}; pick another")
        _OPERATORS[role, name] = OperatorSpec(name, role, factory, letter, dict(flop_handles or {}), loss)
        return factory

    return decorator


def register_fusion(name: str, *, letter: str, flop_handles: Mapping[str, FlopHandle | None] | None = None,
                    loss: Callable[[nn.Module], torch.Tensor] | None = None) -> Callable[[F], F]:
    """Decorator: make ``factory(in_channels, out_channels)`` the fusion operator ``name``."""
    return _register("fusion", name, letter, flop_handles, loss)


def register_depthwise(name: str, *, letter: str, flop_handles: Mapping[str, FlopHandle | None] | None = None,
                       loss: Callable[[nn.Module], torch.Tensor] | None = None) -> Callable[[F], F]:
    """Decorator: make ``factory(channels, kernel_size, stride)`` the depthwise operator ``name``."""
    return _register("depthwise", name, letter, flop_handles, loss)


def operator_specs(role: str | None = None) -> list[OperatorSpec]:
    """Every registered operator (of ``role``), in registration order."""
    return [spec for (r, _), spec in _OPERATORS.items() if role is None or r == role]


def operator_spec(role: str, name: str) -> OperatorSpec:
    """The spec of one operator; a clear error naming the known ones otherwise."""
    try:
        return _OPERATORS[role, name]
    except KeyError:
        known = ", ".join(sorted(s.name for s in operator_specs(role)))
        raise UserError(f"unknown {role} operator {name!r}; known: {known}") from None


def list_fusions() -> list[str]:
    """Names of the registered fusion operators, sorted."""
    return sorted(s.name for s in operator_specs("fusion"))


def list_depthwise() -> list[str]:
    """Names of the registered depthwise operators, in registration order."""
    return [s.name for s in operator_specs("depthwise")]


def create_fusion(kind: str, in_channels: int, out_channels: int, **options: Any) -> nn.Module:
    """Build the fusion operator ``kind`` mapping ``in_channels`` to ``out_channels``."""
    return operator_spec("fusion", kind).factory(in_channels, out_channels, **options)


def create_depthwise(kind: str, channels: int, kernel_size: int, stride: int) -> nn.Module:
    """Build the depthwise operator ``kind`` (output side ``ceil(input side / stride)``)."""
    return operator_spec("depthwise", kind).factory(channels, kernel_size, stride)


def operator_letters() -> dict[str | None, str]:
    """Operator name -> its letter for tables (``None``, an absent layer: ``-``)."""
    return {None: "-", **{spec.name: spec.letter for spec in operator_specs()}}


def operator_flop_handles() -> dict[str, FlopHandle | None]:
    """Every registered operator's FLOP handles, by op name."""
    handles: dict[str, FlopHandle | None] = {}
    for spec in operator_specs():
        handles.update(spec.flop_handles)
    return handles


def operator_loss(model: nn.Module) -> torch.Tensor:
    """Sum of the registered loss terms over every operator instance in ``model`` (0-dim tensor)."""
    by_type = {spec.module_type: spec.loss for spec in operator_specs() if spec.loss and spec.module_type}
    terms = [loss(m) for m in model.modules() for t, loss in by_type.items() if type(m) is t]
    if terms:
        return torch.stack(terms).sum()
    param = next(model.parameters(), None)
    if param is None or not param.is_floating_point():
        return torch.zeros(())
    return torch.zeros((), dtype=param.dtype, device=param.device)


@register_fusion("conv", letter="c")
class PointwiseConv(nn.Conv2d):
    """The reference fusion: a dense 1x1 convolution (same parameters as ``nn.Conv2d``)."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = False) -> None:
        check_positive("in_channels", in_channels)
        check_positive("out_channels", out_channels)
        super().__init__(in_channels, out_channels, kernel_size=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        check_input(x, self.in_channels, type(self).__name__)
        return super().forward(x)
