"""Multi-fidelity search: train many architectures briefly, promote the best to longer training.

With ``[budget] rungs = R`` and ``reduction = eta`` (and ``steps`` the top
rung's), rung ``r`` trains ``steps / eta ** (R - 1 - r)`` steps in all: with
``steps = 400, rungs = 3, reduction = 4``, rungs of 25, 100 and 400 steps.
Every new architecture starts in rung 0. Promotion is asynchronous, as in
ASHA (Li et al., 2020) and its multi-objective form (Schmucker et al.'s
MO-ASHA): whenever a worker needs its next trial it first looks, from the
top rung down, for a trial of rung ``r`` that ranks in the best ``1 / eta``
of the rung's finished trials and has not been promoted yet, ranking by
non-dominated sorting and then crowding distance (NSGA-II's order) of the
study's objectives. If there is one, the next trial is its promotion: the
same architecture at rung ``r + 1``, resuming from the rung-``r`` weights and
training the remaining steps only. Otherwise the sampler proposes a new
architecture.

Unlike ASHA, a rung never holds more promotions than ``1 / eta`` of its
finished trials. ASHA promotes whatever enters the best ``1 / eta``, and with
several objectives that set reshuffles with every trial (crowding distance
is relative): the quickstart promoted 29 of 73 rung-0 trials (0.40, not
0.25), and the extra promotions cost the time of about 15 new architectures.
With the quota, a trial that enters the best ``1 / eta`` late waits until the
rung has grown by ``eta`` trials since the last promotion.

A promotion is an ordinary trial (user attributes ``rung`` and
``promoted_from``), so it is stored, visible in optuna-dashboard, and run by
any worker; the decision is taken under the study's lock
(:mod:`fusionnas.search.coordination`), so two workers never promote the same
trial. A promotion interrupted or lost with its worker is offered again. The
frontier is drawn from the highest rung reached
(:func:`fusionnas.results.pareto.pareto_front`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import optuna
from optuna.study import StudyDirection
from optuna.trial import TrialState

from fusionnas.frontier import promotion_order
from fusionnas.trial_record import TrialRecord

if TYPE_CHECKING:
    from fusionnas.search.config import Budget

__all__ = ["Rungs", "rung_of"]


def rung_of(trial: optuna.trial.FrozenTrial) -> int:
    """The rung a trial trains at (0 for every trial of a study without rungs)."""
    return TrialRecord.read(trial).rung


@dataclass(frozen=True)
class Rungs:
    """The rungs of a budget: how many steps each trains to, and which trial to promote next."""

    steps: tuple[int, ...]  # cumulative steps per rung, increasing
    reduction: int  # eta: a rung promotes its best 1/eta

    @classmethod
    def of(cls, budget: Budget) -> Rungs:
        """The rungs of a study budget (one rung of ``budget.steps`` when it has none)."""
        return cls(budget.estimator.rung_steps(budget), budget.reduction)

    @property
    def count(self) -> int:
        """Number of rungs."""
        return len(self.steps)

    def next_promotion(self, study: optuna.Study) -> tuple[optuna.trial.FrozenTrial, int] | None:
        """(trial, its next rung) to promote now, or None; call it under the study's lock."""
        if self.count == 1:
            return None
        trials = study.get_trials(deepcopy=False)
        promoted = {TrialRecord.read(t).promoted_from for t in trials if _holds_promotion(t, trials)}
        maximize = [d == StudyDirection.MAXIMIZE for d in study.directions]
        for rung in reversed(range(self.count - 1)):
            finished = _rung_results(trials, rung)
            best = len(finished) // self.reduction
            if sum(t.number in promoted for t in finished) >= best:
                continue
            order = promotion_order([t.values for t in finished], maximize)
            for index in order[:best]:
                if finished[index].number not in promoted:
                    return finished[index], rung + 1
        return None


def _rung_results(trials: list[optuna.trial.FrozenTrial], rung: int) -> list[optuna.trial.FrozenTrial]:
    """The evaluated, feasible, finite COMPLETE trials of ``rung``, one per architecture (the first)."""
    seen: set[str] = set()
    results = []
    for t in sorted(trials, key=lambda t: t.number):
        record = TrialRecord.read(t)
        if (t.state != TrialState.COMPLETE or record.rung != rung or not record.evaluated
                or record.feasible is False or t.values is None or not all(math.isfinite(v) for v in t.values)):
            continue
        archid = record.archid
        if archid in seen:
            continue
        seen.add(archid)
        results.append(t)
    return results


def _holds_promotion(trial: optuna.trial.FrozenTrial, trials: list[optuna.trial.FrozenTrial]) -> bool:
    """Whether ``trial`` is a promotion that stands: waiting, running or finished, not interrupted or lost.

    A promotion that failed otherwise (diverged) stands too: it would fail again.
    """
    record = TrialRecord.read(trial)
    if record.promoted_from is None:
        return False
    if trial.state != TrialState.FAIL:
        return True
    retried = any(t.system_attrs.get("failed_trial") == trial.number for t in trials)
    return not retried and record.failure_reason is not None and not record.interrupted
