"""A multi-objective evolutionary sampler: mutate one or two choices of an architecture on the frontier.

Regularised evolution and local search found that most of what a NAS sampler
gains over random search comes from mutating good architectures (BANANAS'
ablation credits the mutation of the incumbent). :class:`EvolutionSampler`
does that for several objectives, as an Optuna sampler, so it runs in the
existing workers and its trials look like any other in the storage and the
dashboard:

1. until ``n_startup_trials`` trials are complete it samples at random
   (enqueued presets count);
2. then every new trial is a mutant of a parent drawn uniformly from the
   frontier (non-domination rank 0) of the completed trials. Only feasible
   trials are parents (``trial.set_constraint`` values all <= 0); while none
   is feasible, the least-violating ones are;
3. the mutant changes one choice of its parent to another value of that
   choice, and is redrawn while it repeats an architecture already tried or
   running in another worker; after half the redraws it changes two.

On a seeded knapsack-like toy problem (8 four-valued choices, 60 trials;
``tests/search/test_evolution.py``) uniform frontier parents with one change
reached 1.12x random search's hypervolume; a binary tournament by rank and
crowding distance 1.03x, and two changes at a time half the time 1.06x.

``population_size`` limits the parents to the most recent trials (aging, as
in regularised evolution); None keeps all of them.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.search_space import IntersectionSearchSpace
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from fusionnas.frontier import pareto_mask

__all__ = ["EvolutionSampler"]

_REDRAWS = 32  # mutants tried before a repeated architecture is accepted


class EvolutionSampler(BaseSampler):
    """Mutates frontier architectures (see the module docstring).

    Args:
        n_startup_trials: completed trials sampled at random before mutation starts.
        population_size: parents come from the most recent so many completed trials (None: all).
        seed: seeds the random start, the parents drawn and the mutations.
    """

    def __init__(self, *, n_startup_trials: int = 8, population_size: int | None = None,
                 seed: int | None = None) -> None:
        if n_startup_trials < 0:
            raise ValueError(f"n_startup_trials must be >= 0, got {n_startup_trials}")
        if population_size is not None and population_size < 2:
            raise ValueError(f"population_size must be >= 2, got {population_size}")
        self.n_startup_trials = n_startup_trials
        self.population_size = population_size
        self._rng = np.random.RandomState(seed)
        self._random = RandomSampler(seed=seed)
        self._search_space = IntersectionSearchSpace()

    def reseed_rng(self) -> None:  # noqa: D102 (Optuna calls it in each worker)
        self._rng.seed()
        self._random.reseed_rng()

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        """Every parameter all completed trials share (all of a fixed-depth space's)."""
        return self._search_space.calculate(study)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        """A mutant of a tournament-picked parent; empty (so random) during the start-up trials."""
        if not search_space:
            return {}
        trials = study.get_trials(deepcopy=False)
        complete = [t for t in trials if t.state == TrialState.COMPLETE and t.values is not None
                    and all(name in t.params for name in search_space)]
        if len(complete) < max(self.n_startup_trials, 1):
            return {}
        if self.population_size is not None:
            complete = sorted(complete, key=lambda t: t.number)[-self.population_size:]
        parent = self._frontier_parent(_parents(complete), study.directions)
        seen = {_key(t.params) for t in trials if t.params and t.number != trial.number}
        for attempt in range(_REDRAWS):
            child = self._mutate(parent.params, search_space, changes=1 if attempt < _REDRAWS // 2 else 2)
            if _key(child) not in seen:
                break
        return child

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        """Parameters outside the relative space (and every one at the start) are drawn at random."""
        return self._random.sample_independent(study, trial, param_name, param_distribution)

    def _frontier_parent(self, pool: list[FrozenTrial], directions: Sequence[StudyDirection]) -> FrozenTrial:
        maximize = [d == StudyDirection.MAXIMIZE for d in directions]
        front = np.flatnonzero(pareto_mask([_finite(t.values, maximize) for t in pool], maximize))
        return pool[int(front[self._rng.randint(len(front))])]

    def _mutate(self, params: dict[str, Any], search_space: dict[str, BaseDistribution],
                changes: int) -> dict[str, Any]:
        mutable = [name for name, dist in search_space.items() if _choices(dist) > 1]
        child = {name: params[name] for name in search_space}
        if not mutable:
            return child
        for name in self._rng.choice(mutable, size=min(changes, len(mutable)), replace=False):
            child[str(name)] = self._other_value(params[name], search_space[str(name)])
        return child

    def _other_value(self, value: Any, distribution: BaseDistribution) -> Any:
        if isinstance(distribution, CategoricalDistribution):
            others = [c for c in distribution.choices if c != value]
            return others[self._rng.randint(len(others))]
        low, high = distribution.low, distribution.high  # int or float: a step of a tenth of the range
        step = getattr(distribution, "step", None) or 1
        if isinstance(value, int) and not isinstance(value, bool):
            moved = value + step * (1 if self._rng.rand() < 0.5 else -1)
            return int(min(max(moved, low), high)) if moved != value else value
        return float(np.clip(value + self._rng.normal(0, 0.1 * (high - low)), low, high))


def _parents(complete: list[FrozenTrial]) -> list[FrozenTrial]:
    """The feasible trials, or while there are none the least-violating ones."""
    feasible = [t for t in complete if all(v <= 0 for v in t.constraints.values())]
    if feasible:
        return feasible
    excess = [sum(max(v, 0.0) for v in t.constraints.values()) for t in complete]
    least = min(excess)
    return [t for t, e in zip(complete, excess) if e == least]


def _finite(values: Sequence[float], maximize: Sequence[bool]) -> list[float]:
    """Values with NaN and infinities replaced by the worst finite stand-ins (a failed score ranks last)."""
    worst = [-1e300 if up else 1e300 for up in maximize]
    return [v if math.isfinite(v) else w for v, w in zip(values, worst)]


def _choices(distribution: BaseDistribution) -> int:
    if isinstance(distribution, CategoricalDistribution):
        return len(distribution.choices)
    return 2 if distribution.high > distribution.low else 1  # type: ignore[attr-defined]


def _key(params: dict[str, Any]) -> tuple:
    return tuple(sorted((name, repr(value)) for name, value in params.items()))
