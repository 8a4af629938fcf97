"""Non-dominated sorting, shared by the search (progress lines) and the results (the frontier)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["pareto_mask"]


def pareto_mask(values: Sequence[Sequence[float]] | np.ndarray, maximize: Sequence[bool]) -> np.ndarray:
    """Boolean mask of the non-dominated rows of ``values`` (equal rows are all kept)."""
    points = np.asarray(values, dtype=float).reshape(len(values), len(maximize))
    if len(points) == 0:
        return np.zeros(0, dtype=bool)
    losses = np.where(np.asarray(maximize), -points, points)  # minimise everything
    mask = np.ones(len(points), dtype=bool)
    for i, row in enumerate(losses):
        dominated = np.all(losses <= row, axis=1) & np.any(losses < row, axis=1)
        mask[i] = not dominated.any()
    return mask

