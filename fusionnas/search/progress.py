"""Where a study stands: which trials count towards its total, and the line printed per trial."""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import optuna
from optuna.trial import TrialState

from fusionnas.frontier import pareto_mask

__all__ = ["SearchProgress", "count_trials", "summarize", "format_progress", "log_progress"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchProgress:
    """Where the study stands after one trial (what the CLI prints)."""

    trial: optuna.trial.FrozenTrial
    done: int  # trials counted towards the total
    target: int | None
    feasible: int  # COMPLETE and feasible
    failed: int
    frontier: int  # feasible trials on the Pareto frontier (of the highest rung reached)
    best: dict[str, tuple[float, int]] = field(default_factory=dict)  # objective -> (value, trial)
    elapsed_s: float = 0.0


def count_trials(study: optuna.Study) -> int:
    """Trials that count towards ``n_trials``: all but waiting ones, interrupted ones and retried ones."""
    trials = study.get_trials(deepcopy=False)
    retried = {t.system_attrs.get("failed_trial") for t in trials} - {None}
    return sum(
        1 for t in trials
        if t.state != TrialState.WAITING
        and not (t.state == TrialState.FAIL
                 and (t.user_attrs.get("failure_reason") == "interrupted" or t.number in retried))
    )


def summarize(study: optuna.Study, trial: optuna.trial.FrozenTrial, target: int | None,
              elapsed_s: float = 0.0) -> SearchProgress:
    """The :class:`SearchProgress` of ``study`` just after ``trial``."""

    trials = study.get_trials(deepcopy=False)
    feasible = [t for t in trials if t.state == TrialState.COMPLETE and t.user_attrs.get("feasible", True)
                and t.values is not None and all(math.isfinite(v) for v in t.values)]
    top = max((int(t.user_attrs.get("rung", 0)) for t in feasible), default=0)
    ranked = [t for t in feasible if int(t.user_attrs.get("rung", 0)) == top]  # the highest fidelity's
    names = study.metric_names or [f"value{i}" for i in range(len(study.directions))]
    maximize = [d == optuna.study.StudyDirection.MAXIMIZE for d in study.directions]
    best = {}
    for i, (name, up) in enumerate(zip(names, maximize)):
        if ranked:
            pick = (max if up else min)(ranked, key=lambda t: t.values[i])
            best[name] = (pick.values[i], pick.number)
    frontier = int(pareto_mask([t.values for t in ranked], maximize).sum()) if ranked else 0
    return SearchProgress(trial=trial, done=count_trials(study), target=target, feasible=len(feasible),
                          failed=sum(t.state == TrialState.FAIL for t in trials), frontier=frontier, best=best,
                          elapsed_s=elapsed_s)


def format_progress(p: SearchProgress) -> str:
    """One line per trial, e.g. ``[3/16] trial 2 complete: ... | feasible 3, frontier 2, best ...``."""
    t = p.trial
    head = f"[{p.done}/{p.target}]" if p.target else f"[{p.done}]"
    state = t.state.name.lower()
    if t.state == TrialState.FAIL:
        what = f"failed ({t.user_attrs.get('failure_reason', 'unknown')})"
    elif t.state == TrialState.PRUNED:
        what = "pruned (prefiltered)" if t.user_attrs.get("prefiltered") else "pruned"
    elif not t.user_attrs.get("feasible", True):
        over = ", ".join(t.user_attrs.get("constraint_violations", {}))
        what = f"infeasible ({over} over the limit), not trained"
    else:
        what = state
        if "promoted_from" in t.user_attrs:
            what += f" (rung {t.user_attrs.get('rung')}, promoted from trial {t.user_attrs['promoted_from']})"
        if "reused_from" in t.user_attrs:
            what += f" (reused trial {t.user_attrs['reused_from']})"
    best = ", ".join(f"{name} {_short(v)} (#{n})" for name, (v, n) in p.best.items())
    return (f"{head} trial {t.number} {t.user_attrs.get('archid', '')} {what} | feasible {p.feasible}, "
            f"failed {p.failed}, frontier {p.frontier}; best {best or '-'} [{p.elapsed_s:.0f} s]")


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
