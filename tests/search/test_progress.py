"""The line per trial says what its frontier and best values count; the trial counts are true."""
from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from _records import frozen_trial
from fusionnas.search import count_trials, describe_trials, format_progress
from fusionnas.search.progress import summarize
from fusionnas.trial_record import TrialRecord

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
DIST = {"x": optuna.distributions.FloatDistribution(0, 1)}


def add(study: optuna.Study, values=None, state=TrialState.COMPLETE, **fields) -> optuna.trial.FrozenTrial:
    """A feasible trial whose record has ``fields`` (TrialRecord's)."""
    study.add_trial(frozen_trial(TrialRecord(feasible=True, **fields), state=state, values=values, params={"x": 0.5},
                                 distributions=DIST))
    return study.trials[-1]


def test_after_a_promotion_the_frontier_and_trained_best_name_their_rung_and_costs_count_every_trial() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_metric_names(["accuracy", "flops"])
    for accuracy, flops in ((0.50, 92.8e6), (0.45, 45.6e6), (0.40, 60e6)):
        last = add(study, [accuracy, flops], archid="a")
    line = format_progress(summarize(study, last, 8))
    assert "frontier 2; best accuracy 0.5 (#0), flops 45.6M (#1)" in line, line
    promoted = add(study, [0.80, 92.8e6], rung=1, promoted_from=0)
    line = format_progress(summarize(study, promoted, 8))
    assert "rung-1 frontier 1; best accuracy 0.8 (#3, rung 1), flops 45.6M (#1)" in line, line


def test_interrupted_and_retried_trials_are_stored_but_do_not_count() -> None:
    study = optuna.create_study(directions=["maximize"])
    add(study, state=TrialState.FAIL, failure_reason="interrupted")
    assert count_trials(study) == 0
    assert describe_trials(study) == ("1 trial (0 complete, 0 pruned, 1 failed), 0 counting towards n_trials "
                                      "(waiting, interrupted or retried trials do not)")
    add(study, [0.5])
    assert describe_trials(study).startswith("2 trials (1 complete, 0 pruned, 1 failed), 1 counting")
    fresh = optuna.create_study(directions=["maximize"])
    add(fresh, [0.5])
    assert describe_trials(fresh) == "1 trial (1 complete, 0 pruned, 0 failed)"


def test_a_long_trial_logs_its_steps_with_the_time_left(caplog):
    import logging

    from fusionnas.search.progress import StepTicker

    now = [0.0]
    ticker = StepTicker("trial 4", 400, every_s=30, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="fusionnas.progress"):
        for step in range(1, 401):
            now[0] = step * 0.25  # 100 s in all
            ticker(step)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["trial 4: step 120/400, 30 s, about 70 s left", "trial 4: step 240/400, 60 s, about 40 s left",
                     "trial 4: step 360/400, 90 s, about 10 s left"]
