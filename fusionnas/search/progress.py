"""Where a study stands: which trials count towards its total, and the line printed per trial.

In a study with rungs (:mod:`fusionnas.search.rungs`) a lower rung's accuracy
comes from fewer training steps, so the frontier and the best trained value
(accuracy) are those of the highest rung reached, and the line says which
rung (``rung-1 frontier 2``, ``accuracy 0.41 (#7, rung 1)``); costs such as
FLOPs do not depend on training, so their best is over every feasible trial.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import optuna
from optuna.trial import TrialState

from fusionnas.frontier import pareto_mask
from fusionnas.metrics import metric_of_column
from fusionnas.trial_record import TrialRecord

__all__ = ["SearchProgress", "StepTicker", "count_trials", "describe_trials", "summarize", "format_progress",
           "log_progress"]

logger = logging.getLogger(__name__)
step_logger = logging.getLogger("fusionnas.progress")  # within a trial; `fusionnas search` shows it


class StepTicker:
    """Called after every training step of a trial: logs, at most every ``every_s`` seconds, how far it
    is and when it should end (``trial 4: step 120/400, 31 s, about 72 s left``)."""

    def __init__(self, label: str, total: int, every_s: float = 30.0, clock=time.monotonic) -> None:
        self.label, self.total, self.every_s, self.clock = label, total, every_s, clock
        self.start = self.last = clock()

    def __call__(self, step: int) -> None:
        now = self.clock()
        if now - self.last < self.every_s or step >= self.total:
            return
        self.last = now
        elapsed = now - self.start
        step_logger.info("%s: step %d/%d, %.0f s, about %.0f s left", self.label, step, self.total, elapsed,
                         elapsed / step * (self.total - step))


@dataclass(frozen=True)
class SearchProgress:
    """Where the study stands after one trial (what the CLI prints)."""

    trial: optuna.trial.FrozenTrial
    done: int  # trials counted towards the total
    target: int | None
    feasible: int  # COMPLETE and feasible
    failed: int
    frontier: int  # feasible trials on the Pareto frontier of rung ``rung``
    # objective -> (value, trial, rung): a trained metric's at rung ``rung``, a cost's over all rungs
    best: dict[str, tuple[float, int, int]] = field(default_factory=dict)
    elapsed_s: float = 0.0
    rung: int = 0  # the highest rung a feasible trial reached (0 without rungs)


def _counts(trial: optuna.trial.FrozenTrial, retried: set[int]) -> bool:
    """Whether ``trial`` counts towards ``n_trials``: not waiting, interrupted or retried."""
    return trial.state != TrialState.WAITING and not (
        trial.state == TrialState.FAIL
        and (TrialRecord.read(trial).interrupted or trial.number in retried))


def count_trials(study: optuna.Study) -> int:
    """Trials that count towards ``n_trials``: all but waiting ones, interrupted ones and retried ones."""
    trials = study.get_trials(deepcopy=False)
    retried = {t.system_attrs.get("failed_trial") for t in trials} - {None}
    return sum(_counts(t, retried) for t in trials)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def describe_trials(study: optuna.Study) -> str:
    """Every stored trial by state, and how many count towards ``n_trials`` where that differs:
    ``2 trials (1 complete, 0 pruned, 1 failed), 1 counting towards n_trials (interrupted or retried
    trials do not)``."""
    trials = study.get_trials(deepcopy=False)
    states = {s: sum(t.state == s for t in trials) for s in TrialState}
    parts = [f"{states[TrialState.COMPLETE]} complete", f"{states[TrialState.PRUNED]} pruned",
             f"{states[TrialState.FAIL]} failed"]
    parts += [f"{states[s]} {s.name.lower()}" for s in (TrialState.RUNNING, TrialState.WAITING) if states[s]]
    text = f"{_plural(len(trials), 'trial')} ({', '.join(parts)})"
    counted = count_trials(study)
    if counted != len(trials):
        text += f", {counted} counting towards n_trials (waiting, interrupted or retried trials do not)"
    return text


def summarize(study: optuna.Study, trial: optuna.trial.FrozenTrial, target: int | None,
              elapsed_s: float = 0.0) -> SearchProgress:
    """The :class:`SearchProgress` of ``study`` just after ``trial``."""

    trials = study.get_trials(deepcopy=False)
    rung = {t.number: TrialRecord.read(t).rung for t in trials}
    feasible = [t for t in trials if t.state == TrialState.COMPLETE and TrialRecord.read(t).feasible is not False
                and t.values is not None and all(math.isfinite(v) for v in t.values)]
    top = max((rung[t.number] for t in feasible), default=0)
    ranked = [t for t in feasible if rung[t.number] == top]  # the highest fidelity's
    names = study.metric_names or [f"value{i}" for i in range(len(study.directions))]
    maximize = [d == optuna.study.StudyDirection.MAXIMIZE for d in study.directions]
    best = {}
    for i, (name, up) in enumerate(zip(names, maximize)):
        metric = metric_of_column(name)
        pool = ranked if metric is None or metric.trained else feasible  # a cost is the same at every rung
        if pool:
            pick = (max if up else min)(pool, key=lambda t: t.values[i])
            best[name] = (pick.values[i], pick.number, rung[pick.number])
    frontier = int(pareto_mask([t.values for t in ranked], maximize).sum()) if ranked else 0
    return SearchProgress(trial=trial, done=count_trials(study), target=target, feasible=len(feasible),
                          failed=sum(t.state == TrialState.FAIL for t in trials), frontier=frontier, best=best,
                          elapsed_s=elapsed_s, rung=top)


def format_progress(p: SearchProgress) -> str:
    """One line per trial, e.g. ``[3/16] trial 2 complete: ... | feasible 3, frontier 2, best ...``;
    once a trial reached rung 1 or above, the frontier and a trained best name their rung."""
    t, record = p.trial, TrialRecord.read(p.trial)
    head = f"[{p.done}/{p.target}]" if p.target else f"[{p.done}]"
    state = t.state.name.lower()
    if t.state == TrialState.FAIL:
        what = f"failed ({record.failure_reason or 'unknown'})"
    elif t.state == TrialState.PRUNED:
        what = "pruned (prefiltered)" if record.prefiltered else "pruned"
    elif record.feasible is False:
        over = ", ".join(record.constraint_violations)
        what = f"infeasible ({over} over the limit), not trained"
    else:
        what = state
        if record.promoted_from is not None:
            what += f" (rung {record.rung}, promoted from trial {record.promoted_from})"
        if record.reused_from is not None:
            what += f" (reused trial {record.reused_from})"
    best = ", ".join(f"{name} {_short(v)} (#{n}{f', rung {r}' if r else ''})" for name, (v, n, r) in p.best.items())
    frontier = f"rung-{p.rung} frontier" if p.rung else "frontier"
    return (f"{head} trial {t.number} {record.archid or ''} {what} | feasible {p.feasible}, "
            f"failed {p.failed}, {frontier} {p.frontier}; best {best or '-'} [{p.elapsed_s:.0f} s]")


def _short(value: float) -> str:
    magnitude = abs(value)
    if magnitude >= 1e6:
        return f"{value / 1e6:.1f}M"
    if magnitude >= 1e3:
        return f"{value / 1e3:.1f}k"
    return f"{value:.4g}"


def log_progress(p: SearchProgress) -> None:
    """Log :func:`format_progress` (the default progress callback)."""
    logger.info("%s", format_progress(p))
