"""The correction that turns a sum of separately timed parts into a whole network's latency.

A part timed alone is not the same part inside a network: alone it pays a
runtime call and converts its input and output between layouts, while
inside a network its neighbours share the layout, and a runtime fuses or
cancels work across their boundaries (a transform's closing transpose and
the next one's opening transpose). How much differs by operator: on a
2-core EPYC in onnxruntime, networks full of transform layers ran ~1.5x
faster than the sum of their parts, all-conv ones about as fast. So, as
nn-Meter corrects its kernel-level predictions, the correction has a term
per operator, learned from whole networks measured on the machine::

    whole = scale * sum(parts) + sum_k terms[k] * count_k + offset

where ``count_k`` counts the network's layers of operator ``k`` other than
the conv baseline's (``fusion:wht``, ``depthwise:hadamard``, ``head:wht``, ...:
every network has as many layers, so the conv counts would repeat the
offset).
Fitted by least squares, then again without the networks more than four
robust standard deviations off the line (a network timed in a burst of
load); with too few networks for the terms, a Theil-Sen line on the sums.
"""
from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from fusionnas.spaces import Arch

__all__ = ["Calibration", "operator_counts", "fit_calibration", "fit_line"]


@dataclass(frozen=True)
class Calibration:
    """``whole = scale * sum(parts) + sum_k terms[k] * count_k + offset`` (see the module docstring)."""

    scale: float = 1.0
    offset: float = 0.0
    terms: Mapping[str, float] = field(default_factory=dict)

    def apply(self, parts_ms: float, counts: Mapping[str, int]) -> float:
        """The whole network's milliseconds from its parts' sum and its :func:`operator_counts`."""
        return self.scale * parts_ms + self.offset + sum(w * counts.get(k, 0) for k, w in self.terms.items())

    def to_json(self) -> dict[str, Any]:
        """A JSON-able form (a latency table's ``calibration``)."""
        return {"scale": self.scale, "offset": self.offset, "terms": dict(sorted(self.terms.items()))}

    @classmethod
    def from_json(cls, data: Any) -> Calibration:
        """Read :meth:`to_json`'s form, or a table's older ``[scale, offset]``."""
        if isinstance(data, Mapping):
            return cls(float(data["scale"]), float(data["offset"]),
                       {str(k): float(v) for k, v in data.get("terms", {}).items()})
        scale, offset = data
        return cls(float(scale), float(offset))


def operator_counts(arch: Arch) -> dict[str, int]:
    """How many layers of each operator other than the conv ``arch`` has, the head's fusion apart
    (alone it ran ~10 % faster than inside a network with a WHT head, on a 2-core EPYC in
    onnxruntime): ``{"fusion:wht": 12, "depthwise:hadamard": 3, "head:wht": 1}``."""
    names = [f"head:{arch.head_fusion}"]
    for block in arch.blocks:
        names += [f"fusion:{f}" for f in (block.expand, block.project) if f is not None]
        names.append(f"depthwise:{block.depthwise}")
    counts: dict[str, int] = {}
    for name in names:
        if name.split(":")[1] != "conv":
            counts[name] = counts.get(name, 0) + 1
    return counts


def fit_calibration(parts_ms: Sequence[float], counts: Sequence[Mapping[str, int]],
                    wholes_ms: Sequence[float]) -> Calibration:
    """The :class:`Calibration` that maps the networks' part sums and operator counts to their wholes."""
    if not len(parts_ms) == len(counts) == len(wholes_ms) or len(parts_ms) < 2:
        raise ValueError(f"need >= 2 networks with a sum, counts and a whole each, got {len(parts_ms)}, "
                         f"{len(counts)}, {len(wholes_ms)}")
    keys = sorted({k for c in counts for k in c if len({c2.get(k, 0) for c2 in counts}) > 1})
    if len(parts_ms) < len(keys) + 5:
        return fit_line(parts_ms, wholes_ms)
    x = np.column_stack([np.asarray(parts_ms, float), *([c.get(k, 0) for c in counts] for k in keys),
                         np.ones(len(parts_ms))])
    y = np.asarray(wholes_ms, float)
    keep = np.ones(len(y), dtype=bool)
    for _ in range(2):
        coef = np.linalg.lstsq(x[keep], y[keep], rcond=None)[0]
        residuals = y - x @ coef
        spread = 1.4826 * np.median(np.abs(residuals[keep] - np.median(residuals[keep])))
        if spread == 0:
            break
        keep = np.abs(residuals) <= 4 * spread
    return Calibration(float(coef[0]), float(coef[-1]), {k: float(c) for k, c in zip(keys, coef[1:-1])})


def fit_line(parts_ms: Sequence[float], wholes_ms: Sequence[float]) -> Calibration:
    """The Theil-Sen line from part sums to wholes (no operator terms): the median of pairwise slopes,
    then the median intercept, which one network timed in a burst of load cannot tilt."""
    xs, ys = parts_ms, wholes_ms
    slopes = [(ys[j] - ys[i]) / (xs[j] - xs[i]) for i in range(len(xs)) for j in range(i + 1, len(xs))
              if xs[j] != xs[i]]
    slope = statistics.median(slopes) if slopes else statistics.fmean(ys) / statistics.fmean(xs)
    return Calibration(slope, statistics.median(y - slope * x for x, y in zip(xs, ys)))
