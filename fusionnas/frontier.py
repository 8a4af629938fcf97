"""Non-dominated sorting, shared by the search (progress lines, promotions) and the results (the frontier)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["pareto_mask", "non_domination_ranks", "crowding_distances", "promotion_order"]


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



def non_domination_ranks(values: Sequence[Sequence[float]] | np.ndarray, maximize: Sequence[bool]) -> np.ndarray:
    """Front number of every row: 0 for the non-dominated ones, 1 for those only they dominate, ..."""
    points = np.asarray(values, dtype=float).reshape(len(values), len(maximize))
    ranks = np.full(len(points), -1, dtype=int)
    rank = 0
    while (left := np.flatnonzero(ranks < 0)).size:
        ranks[left[pareto_mask(points[left], maximize)]] = rank
        rank += 1
    return ranks


def crowding_distances(values: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """NSGA-II's crowding distance of each row within its set: the boundary rows get infinity."""
    points = np.asarray(values, dtype=float)
    if points.ndim != 2 or len(points) < 3:
        return np.full(len(points), np.inf)
    distance = np.zeros(len(points))
    for column in points.T:
        order = np.argsort(column, kind="stable")
        span = column[order[-1]] - column[order[0]]
        distance[order[[0, -1]]] = np.inf
        if span > 0:
            distance[order[1:-1]] += (column[order[2:]] - column[order[:-2]]) / span
    return distance


def promotion_order(values: Sequence[Sequence[float]] | np.ndarray, maximize: Sequence[bool]) -> np.ndarray:
    """Row indices best first: by non-domination rank, then by crowding distance within the rank."""
    points = np.asarray(values, dtype=float).reshape(len(values), len(maximize))
    if len(points) == 0:
        return np.zeros(0, dtype=int)
    ranks = non_domination_ranks(points, maximize)
    crowding = np.zeros(len(points))
    for rank in np.unique(ranks):
        members = np.flatnonzero(ranks == rank)
        crowding[members] = crowding_distances(points[members])
    return np.lexsort((-crowding, ranks))
