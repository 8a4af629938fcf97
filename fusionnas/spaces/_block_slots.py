"""The block positions of a MobileNetV2 space: each one's stride, its channels per width, what it offers."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fusionnas.spaces.network import make_divisible

__all__ = ["FIELDS", "BlockSlot", "block_rows", "block_slots", "offered"]

# The choices of a block (BlockChoice's fields), in the order ``sample`` suggests them.
FIELDS = ("expand", "expand_ratio", "depthwise", "kernel", "project", "width")

# (t, stride, width multiplier -> output channels, offered width -> the width with its channels)
_Row = tuple[int, int, Mapping[float, int], Mapping[float, float]]


@dataclass(frozen=True)
class BlockSlot:
    """One block position of a space: its fixed stride and nominal width, and what it offers."""

    base_ratio: int
    stride: int
    widths_out: Mapping[float, int]  # offered width multiplier -> output channels
    expand: tuple[str | None, ...]
    expand_ratio: tuple[int, ...]
    depthwise: tuple[str, ...]
    kernel: tuple[int, ...]
    project: tuple[str, ...]

    @property
    def width(self) -> tuple[float, ...]:
        return tuple(self.widths_out)

    def choices(self) -> dict[str, tuple[Any, ...]]:
        """Allowed values per BlockChoice field, in the order ``sample`` suggests them."""
        return {name: getattr(self, name) for name in FIELDS}


def block_rows(setting: Sequence[Sequence[int]], width_mult: float, widths: Sequence[float],
               round_nearest: int) -> list[_Row]:
    """One row per block of the ``# t, c, n, s`` table; a width that rounds to the channels of
    another is that width (1.0 kept first), so a block never offers one layer twice."""
    rows: list[_Row] = []
    for t, c, n, s in setting:
        widths_out: dict[float, int] = {1.0: make_divisible(c * width_mult, round_nearest)}
        same: dict[float, float] = {}
        for w in sorted(widths, key=lambda w: abs(w - 1.0)):  # a duplicate width keeps 1.0
            out = make_divisible(c * width_mult * w, round_nearest)
            same[float(w)] = next((v for v, o in widths_out.items() if o == out), float(w))
            widths_out.setdefault(same[float(w)], out)
        widths_out = {w: widths_out[w] for w in sorted(widths_out)}
        rows += [(t, s if i == 0 else 1, widths_out, same) for i in range(n)]
    return rows


def block_slots(rows: Sequence[_Row], fusions: tuple[str, ...], depthwise: tuple[str, ...],
                expand_ratios: tuple[int, ...], kernels: tuple[int, ...], widths: Sequence[float]) -> list[BlockSlot]:
    """The slots of ``rows`` offering these operators and values (a block with t = 1 has no expansion)."""
    return [
        BlockSlot(base_ratio=t, stride=stride,
                  widths_out={w: out for w, out in widths_out.items() if w in {same[v] for v in widths}},
                  expand=(None,) if t == 1 else fusions,
                  expand_ratio=(1,) if t == 1 else expand_ratios,
                  depthwise=depthwise, kernel=kernels, project=fusions)
        for t, stride, widths_out, same in rows
    ]


def offered(registered: Sequence[str], first: Sequence[str]) -> tuple[str, ...]:
    """``registered`` with the names of ``first`` leading, in their order, the rest sorted."""
    return (*(n for n in first if n in registered), *sorted(n for n in registered if n not in first))
