"""The trial function: costs in user attrs, limits as constraints, reuse, failures, prefilter."""
from __future__ import annotations

import json
import logging
import math
import threading
import time

import optuna
import pytest
from optuna.trial import TrialState

from _records import frozen_trial
from _studies import PROXY, ZERO_COST, study_config
from fusionnas.evaluators import ProxyResult, TrainingDiverged, get_dataset
from fusionnas.evaluators.deployed import DeployedLatencyMeter, WholeLatency
from fusionnas.search import SearchObjective, StudyContext, TrialFailed
from fusionnas.spaces import get_space
from fusionnas.trial_record import Evaluation, TrialRecord

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
SPACE = get_space("mobilenetv2-cifar")


@pytest.fixture(scope="module")
def digits():
    return get_dataset("digits", seed=0)


@pytest.fixture(autouse=True)
def _quiet():
    optuna.logging.set_verbosity(optuna.logging.ERROR)


def fake_training(calls: list, fail_first: bool = False):
    """A stand-in for train_proxy that records its calls (and may diverge the first time)."""

    def train(model, data, budget, progress=False, on_step=None):
        calls.append(budget)
        if fail_first and len(calls) == 1:
            raise TrainingDiverged("training loss is nan at step 1 of 2 (lr=0.05); lower lr", step=1, loss=math.nan)
        return ProxyResult(val_accuracy=0.5 + 0.01 * len(calls), val_loss=1.0, loss_curve=[1.0], train_seconds=0.1,
                           eval_seconds=0.0, steps=2, epochs=0.1, train_samples=10, device="cpu")

    return train


def refuse_training(*args, **kwargs):
    raise AssertionError("this budget must not train")


def new_study(config) -> optuna.Study:
    return optuna.create_study(directions=config.directions, sampler=optuna.samplers.RandomSampler(seed=0))


def test_costs_and_identity_go_into_the_trial_record(tmp_path, digits) -> None:
    calls: list = []
    config = study_config(tmp_path, PROXY)
    study = new_study(config)
    study.optimize(SearchObjective(StudyContext.build(config, digits, tmp_path / "artifacts"), train=fake_training(calls)), n_trials=1)
    trial = study.trials[0]
    record = TrialRecord.read(trial)
    assert trial.state == TrialState.COMPLETE
    arch = SPACE.sample(optuna.trial.FixedTrial(trial.params))
    assert record.arch == arch.to_json() and record.archid == arch.archid
    assert record.fingerprint == config.fingerprint
    assert record.costs["params"] > 0 and record.costs["flops"] > 0 and record.costs["memory_mb"] > 0
    assert record.feasible is True and record.constraint_violations == {}
    assert trial.values == [record.evaluation.val_accuracy, record.costs["flops"]]
    assert (tmp_path / "artifacts" / "weights" / record.evaluation.weights).is_file()
    assert len(calls) == 1 and calls[0].steps == 2 and calls[0].resolution == 8


def test_infeasible_architectures_are_recorded_but_never_trained(tmp_path, digits) -> None:
    calls: list = []
    config = study_config(tmp_path, PROXY, constraints={"max_flops": 1e6, "max_params": 1e9})
    study = new_study(config)
    study.optimize(SearchObjective(StudyContext.build(config, digits), train=fake_training(calls)), n_trials=2)
    assert calls == []
    for trial in study.trials:
        assert trial.state == TrialState.COMPLETE
        record = TrialRecord.read(trial)
        assert record.feasible is False
        assert trial.constraints["flops"] == pytest.approx(record.costs["flops"] - 1e6)
        assert trial.constraints["params"] < 0
        assert set(record.constraint_violations) == {"flops"}
        assert trial.values == [0.0, record.costs["flops"]]  # untrained: the worst accuracy
        assert record.evaluation.val_accuracy is None
    assert study.best_trials == []  # Optuna keeps infeasible trials off its frontier too


def test_a_failed_trial_is_recorded_and_the_study_goes_on(tmp_path, digits) -> None:
    calls: list = []
    config = study_config(tmp_path, PROXY)
    study = new_study(config)
    study.optimize(SearchObjective(StudyContext.build(config, digits), train=fake_training(calls, fail_first=True)), n_trials=3,
                   catch=(TrialFailed,))
    states = [t.state for t in study.trials]
    assert states == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert TrialRecord.read(study.trials[0]).failure_reason.startswith("diverged: training loss is nan")
    assert "flops" in TrialRecord.read(study.trials[0]).costs  # the costs measured before the failure stay


def test_an_archid_evaluated_before_is_reused(tmp_path, digits) -> None:
    calls: list = []
    config = study_config(tmp_path, PROXY)
    study = new_study(config)
    params = SPACE.params(SPACE.baseline())
    study.enqueue_trial(params)
    study.enqueue_trial(params)
    study.optimize(SearchObjective(StudyContext.build(config, digits), train=fake_training(calls)), n_trials=2)
    first, second = study.trials
    assert len(calls) == 1
    assert TrialRecord.read(second).reused_from == 0
    assert second.values == first.values
    assert TrialRecord.read(second).archid == TrialRecord.read(first).archid is not None


def test_reuse_rechecks_limits_that_changed(tmp_path, digits) -> None:
    """An archid once infeasible is trained when a later run relaxes the limit."""
    calls: list = []
    strict = study_config(tmp_path, PROXY, constraints={"max_flops": 1e6})
    study = new_study(strict)
    study.enqueue_trial(SPACE.params(SPACE.baseline()))
    study.optimize(SearchObjective(StudyContext.build(strict, digits), train=fake_training(calls)), n_trials=1)
    relaxed = study_config(tmp_path, PROXY, constraints={"max_flops": 1e9})
    study.enqueue_trial(SPACE.params(SPACE.baseline()))
    study.optimize(SearchObjective(StudyContext.build(relaxed, digits), train=fake_training(calls)), n_trials=1)
    second = study.trials[1]
    assert len(calls) == 1 and TrialRecord.read(second).feasible is True
    assert TrialRecord.read(second).reused_from == 0 and second.values[0] > 0


def test_a_duplicate_running_in_another_worker_is_waited_for(tmp_path, digits) -> None:
    calls: list = []
    config = study_config(tmp_path, PROXY)
    study = new_study(config)
    arch = SPACE.baseline()
    study.enqueue_trial(SPACE.params(arch))
    other = study.ask()  # "another worker" holds trial 0 of the same archid
    TrialRecord(archid=arch.archid, fingerprint=config.fingerprint, evaluated=True,
                evaluation=Evaluation(val_accuracy=0.75), costs={"flops": 123.0, "params": 4.0, "memory_mb": 1.0}
                ).write(other)

    def finish() -> None:
        time.sleep(0.5)
        study.tell(other, [0.75, 123.0])

    thread = threading.Thread(target=finish)
    thread.start()
    study.enqueue_trial(SPACE.params(arch))
    study.optimize(SearchObjective(StudyContext.build(config, digits), poll_s=0.05, train=fake_training(calls)), n_trials=1)
    thread.join()
    mine = study.trials[1]
    assert calls == [] and TrialRecord.read(mine).reused_from == 0 and mine.values == [0.75, 123.0]


def test_a_duplicate_is_evaluated_after_the_wait(tmp_path, digits) -> None:
    calls: list = []
    config = study_config(tmp_path, PROXY)
    study = new_study(config)
    arch = SPACE.baseline()
    study.enqueue_trial(SPACE.params(arch))
    stuck = study.ask()
    TrialRecord(archid=arch.archid, fingerprint=config.fingerprint).write(stuck)
    study.enqueue_trial(SPACE.params(arch))
    objective = SearchObjective(StudyContext.build(config, digits), duplicate_wait_s=0.2, poll_s=0.05, train=fake_training(calls))
    study.optimize(objective, n_trials=1)
    assert len(calls) == 1 and study.trials[1].state == TrialState.COMPLETE


def test_zero_cost_budget_scores_without_training(tmp_path, digits) -> None:
    config = study_config(tmp_path, ZERO_COST)
    study = new_study(config)
    study.optimize(SearchObjective(StudyContext.build(config, digits), train=refuse_training), n_trials=1)
    trial = study.trials[0]
    assert trial.state == TrialState.COMPLETE
    record = TrialRecord.read(trial)
    assert trial.values == [record.scores["synflow"], record.costs["flops"]]
    assert record.scores["synflow"] > 0 and record.evaluation.weights is None


def test_prefilter_prunes_low_zero_cost_scores(tmp_path, digits) -> None:
    calls: list = []
    config = study_config(tmp_path, {**PROXY, "budget": {**PROXY["budget"], "prefilter": 0.5}})
    study = new_study(config)
    dist = optuna.distributions.FloatDistribution(0, 1)
    for _ in range(4):  # earlier trials that all scored far higher
        study.add_trial(frozen_trial(TrialRecord(scores={"synflow": 1e300}), values=[0.9, 1e8], params={"x": 0.5},
                                     distributions={"x": dist}))
    study.optimize(SearchObjective(StudyContext.build(config, digits), train=fake_training(calls)), n_trials=1)
    trial = study.trials[-1]
    record = TrialRecord.read(trial)
    assert trial.state == TrialState.PRUNED and record.prefiltered is True
    assert calls == [] and 0 < record.scores["synflow"] < 1e300


def test_latency_limits_use_the_device_estimate(tmp_path, digits, caplog) -> None:
    calls: list = []
    config = study_config(tmp_path, PROXY, constraints={"max_latency_ms": 1e-3, "latency_device": "jetson-nano"})
    study = new_study(config)
    with caplog.at_level(logging.WARNING, logger="fusionnas"):
        study.optimize(SearchObjective(StudyContext.build(config, digits), train=fake_training(calls)), n_trials=2)
    record = TrialRecord.read(study.trials[0])
    latency = record.latencies["jetson-nano"]
    assert latency.source == "estimated"
    assert latency.runtime == "onnxruntime"  # parts measured here, scaled to the board
    assert study.trials[0].constraints["latency_ms"] == pytest.approx(latency.ms - 1e-3)
    assert record.feasible is False and calls == []
    said = [r.getMessage() for r in caplog.records if "ESTIMATE" in r.getMessage()]
    assert len(said) == 1 and "fusionnas profile" in said[0]  # once per worker, with the way out


def test_a_trained_network_s_cpu_latency_is_measured_whole(tmp_path, digits) -> None:
    calls: list = []
    objectives = [{"metric": "accuracy"}, {"metric": "latency", "device": "cpu"}]
    config = study_config(tmp_path, PROXY, objectives=objectives)
    study = new_study(config)
    study.enqueue_trial(SPACE.params(SPACE.baseline()))
    study.optimize(SearchObjective(StudyContext.build(config, digits, tmp_path / "artifacts"), train=fake_training(calls)), n_trials=1)
    latency = TrialRecord.read(study.trials[0]).latencies["cpu"]
    assert latency.source == "whole" and latency.ms > 0
    assert latency.runtime == "onnxruntime"  # the default: what an exported model runs in
    assert study.trials[0].values[1] == latency.ms
    assert latency.estimate_ms > 0  # the table's figure, which decided the limits
    # the baseline against itself; the bound only catches a ratio turned upside down or unscaled
    assert 0.5 < latency.ratio < 2
    assert latency.ms == pytest.approx(latency.ratio * latency.reference_ms)
    assert (tmp_path / "artifacts" / "latency-cpu-onnxruntime.json").is_file()
    reference = json.loads((tmp_path / "artifacts" / "latency-reference-cpu-onnxruntime.json").read_text())
    assert reference["ms"] == latency.reference_ms and reference["reference"] == SPACE.baseline().archid


def fake_meter(monkeypatch, whole: WholeLatency, measured: list | None = None) -> None:
    """Every table part timed at 0.05 ms, every whole network (appended to ``measured``) at ``whole``."""
    monkeypatch.setattr(DeployedLatencyMeter, "measure", lambda self, model, **options: WholeLatency(0.05, 1.0))
    monkeypatch.setattr(DeployedLatencyMeter, "prepare", lambda self, model, **options: model)
    monkeypatch.setattr(DeployedLatencyMeter, "time",
                        lambda self, model: (measured.append(model) if measured is not None else None) or whole)


def test_the_limits_are_checked_again_on_the_measured_latency(tmp_path, digits, monkeypatch) -> None:
    calls: list = []
    fake_meter(monkeypatch, WholeLatency(4.0, 1000.0))
    config = study_config(tmp_path, PROXY, constraints={"max_latency_ms": 500.0, "latency_device": "cpu"})
    study = new_study(config)
    study.enqueue_trial(SPACE.params(SPACE.baseline()))
    objective = SearchObjective(StudyContext.build(config, digits, tmp_path / "artifacts"), train=fake_training(calls))
    study.optimize(objective, n_trials=1)
    trial = study.trials[0]
    assert len(calls) == 1  # the table's estimate (a few ms) let it train
    record = TrialRecord.read(trial)
    assert record.latencies["cpu"].estimate_ms < 500 and record.latencies["cpu"].ms == 4000.0
    assert record.feasible is False and trial.constraints == {"latency_ms": pytest.approx(3500.0)}
    assert record.constraint_violations == {"latency_ms": pytest.approx(3500.0)}


def test_a_reused_architecture_keeps_its_measured_latency(tmp_path, digits, monkeypatch) -> None:
    calls: list = []
    measures: list = []
    fake_meter(monkeypatch, WholeLatency(1.5, 2.0), measures)
    objectives = [{"metric": "accuracy"}, {"metric": "latency", "device": "cpu"}]
    config = study_config(tmp_path, PROXY, objectives=objectives)
    study = new_study(config)
    for _ in range(2):
        study.enqueue_trial(SPACE.params(SPACE.baseline()))
    study.optimize(SearchObjective(StudyContext.build(config, digits, tmp_path / "artifacts"), train=fake_training(calls)), n_trials=2)
    first, second = (TrialRecord.read(t) for t in study.trials)
    assert len(calls) == len(measures) == 1 and second.reused_from == 0
    for key in ("ms", "source", "estimate_ms", "ratio"):
        assert getattr(second.latencies["cpu"], key) == getattr(first.latencies["cpu"], key)
    assert study.trials[1].values == study.trials[0].values == [first.evaluation.val_accuracy, 3.0]