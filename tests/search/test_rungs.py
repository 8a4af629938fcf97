"""Multi-fidelity rungs: which trial is promoted, resuming from its weights, the frontier's rungs."""
from __future__ import annotations

import subprocess
import sys
from collections import Counter

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from _records import frozen_trial
from _studies import PROXY, PROXY_TOML, study_config, write_study
from _workers import ENV
from fusionnas.evaluators import train_proxy
from fusionnas.results import trials_frame
from fusionnas.search import Budget, run_study
from fusionnas.search.rungs import Rungs
from fusionnas.trial_record import TrialRecord

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
RUNGS = {**PROXY, "budget": {**PROXY["budget"], "steps": 8, "rungs": 2, "reduction": 4}}  # 2, then 8 steps


@pytest.fixture(autouse=True)
def _quiet():
    optuna.logging.set_verbosity(optuna.logging.ERROR)


def test_rung_steps_grow_by_the_reduction_to_the_budget() -> None:
    assert Rungs.of(Budget(steps=400, rungs=3, reduction=4)).steps == (25, 100, 400)
    assert Rungs.of(Budget(steps=100, rungs=3, reduction=3)).steps == (11, 33, 100)
    assert Rungs.of(Budget(steps=50)).steps == (50,)
    assert Rungs.of(Budget(steps=50)).next_promotion(optuna.create_study()) is None


def finished(study: optuna.Study, x: int, values: tuple[float, float], **fields) -> None:
    """An evaluated, feasible trial of architecture ``a<x>`` whose record has ``fields`` (TrialRecord's)."""
    study.add_trial(frozen_trial(
        TrialRecord(archid=f"a{x}", evaluated=True, feasible=True, **fields),
        values=list(values), params={"x": x}, distributions={"x": CategoricalDistribution(list(range(20)))}))


def test_the_best_quarter_of_a_rung_is_promoted_best_first_and_once() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    for x in range(8):  # accuracy rises with x, cost too: all on one frontier but x=7 dominates x=6's twin
        finished(study, x, (0.1 * x, float(x)))
    finished(study, 9, (0.1, 9.0))  # dominated by everything: never promoted
    rungs = Rungs((2, 8, 32), reduction=4)
    picked = []
    while (promotion := rungs.next_promotion(study)) is not None:
        parent, rung = promotion
        picked.append((parent.number, rung))
        TrialRecord(rung=rung, promoted_from=parent.number).enqueue(study, parent.params)
    assert len(picked) == 9 // 4 and all(rung == 1 for _, rung in picked)
    assert {number for number, _ in picked} <= set(range(8)) and len(set(picked)) == len(picked)


def test_a_rung_never_holds_more_promotions_than_its_best_share() -> None:
    """New trials that outrank the promoted ones wait until the rung has grown by eta trials."""
    study = optuna.create_study(directions=["maximize", "minimize"])
    rungs = Rungs((2, 8), reduction=4)
    promotions = []
    for x in range(16):  # every new trial dominates all before it: ASHA would promote each one
        finished(study, x, (0.05 * x, 1.0))
        while (promotion := rungs.next_promotion(study)) is not None:
            parent, rung = promotion
            promotions.append((x, parent.params["x"]))
            TrialRecord(rung=rung, promoted_from=parent.number).enqueue(study, parent.params)
            study.ask()  # the promotion runs (and stands) before the next trial finishes
    assert promotions == [(3, 3), (7, 7), (11, 11), (15, 15)]  # 16 // 4, each the best at its time


def test_a_higher_rung_is_promoted_first_and_an_interrupted_promotion_again() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    for x in range(4):
        finished(study, x, (0.1 * x, 1.0), rung=1)
    for x in range(4, 8):
        finished(study, x, (0.5, 1.0))
    rungs = Rungs((2, 4, 8), reduction=4)
    parent, rung = rungs.next_promotion(study)
    assert rung == 2 and parent.params["x"] == 3  # rung 1's best, before rung 0's
    trial = study.ask({"x": CategoricalDistribution(list(range(20)))})
    TrialRecord(rung=2, promoted_from=parent.number, failure_reason="interrupted").write(trial)
    study.tell(trial, state=TrialState.FAIL)
    assert rungs.next_promotion(study)[0].number == parent.number  # offered again


def test_promotions_resume_from_the_lower_rung_and_the_frontier_uses_the_top(tmp_path) -> None:
    budgets = []

    def recording(model, data, budget, progress=False, on_step=None):
        budgets.append(budget.steps)
        return train_proxy(model, data, budget, on_step=on_step)

    config = study_config(tmp_path, RUNGS, n_trials=7, enqueue=[])
    study = run_study(config, progress=False, train=recording)
    trials = study.trials
    records = [TrialRecord.read(t) for t in trials]
    promoted = [t for t, r in zip(trials, records) if r.rung == 1]
    assert promoted and len(trials) == 7
    for trial in promoted:
        record = records[trial.number]
        parent = trials[record.promoted_from]
        parent_record = records[parent.number]
        assert trial.params == parent.params and record.evaluation.resumed_from == parent.number
        assert record.evaluation.proxy_steps == 8 and parent_record.evaluation.proxy_steps == 2
        assert record.rung_accuracies[0] == parent_record.evaluation.val_accuracy
        assert record.costs["flops"] == parent_record.costs["flops"]
    assert Counter(budgets) == {2: 7 - len(promoted), 8 - 2: len(promoted)}  # resumed: the remaining steps only
    frame = trials_frame(study)
    assert frame["is_pareto"].any() and (frame.loc[frame["is_pareto"], "rung"] == 1).all()  # the top rung only


def test_two_workers_promote_each_trial_once(tmp_path) -> None:
    text = PROXY_TOML.replace("n_trials = 3", "n_trials = 10").replace('enqueue = ["baseline"]', "")
    write_study(tmp_path, text.replace("steps = 2", "steps = 4\nrungs = 2\nreduction = 2"))
    args = [sys.executable, "-m", "fusionnas.cli", "search", "tiny.toml"]
    workers = [subprocess.Popen(args, cwd=tmp_path, env=ENV, text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE) for _ in range(2)]
    outputs = [w.communicate(timeout=300) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    trials = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 'tiny.db'}").trials
    assert len(trials) == 10 and all(t.state == TrialState.COMPLETE for t in trials)
    parents = [r.promoted_from for r in map(TrialRecord.read, trials) if r.promoted_from is not None]
    assert parents and len(parents) == len(set(parents))
