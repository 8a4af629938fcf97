"""The trial record: the one place that names what a study stores, read and written as before."""
from __future__ import annotations

import ast
from pathlib import Path

import optuna
import pytest

from fusionnas.trial_record import Evaluation, Latency, StudyRecord, TrialRecord, latency_column

ROOT = Path(__file__).resolve().parents[1]
RECORD_MODULE = ROOT / "fusionnas" / "trial_record.py"

# A trial as studies have stored it since rungs and whole-network latency were added (names fixed:
# older studies and optuna-dashboard read them).
STORED = {
    "arch": "{}", "archid": "a1b2c3", "fingerprint": "f00d", "num_classes": 10, "rung": 1, "promoted_from": 3,
    "params": 2236682, "flops": 6.1e6, "memory_mb": 0.5,
    "latency_ms@cpu": 1.5, "latency_source@cpu": "whole", "latency_runtime@cpu": "onnxruntime",
    "latency_estimate_ms@cpu": 1.7, "latency_ratio@cpu": 0.9, "latency_reference_ms@cpu": 1.35,
    "latency_ms@jetson-nano": 12.0, "latency_source@jetson-nano": "estimated",
    "latency_runtime@jetson-nano": "onnxruntime", "synflow": 41.5,
    "feasible": True, "constraint_violations": {}, "evaluated": True,
    "val_accuracy": 0.5, "val_loss": 1.2, "train_seconds": 3.0, "proxy_steps": 8, "weights": "a1b2c3-f00d-rung1.pt",
    "resumed_from": 3, "val_accuracy@rung0": 0.4, "val_accuracy@rung1": 0.5,
}


def test_a_stored_trial_reads_as_typed_fields_and_writes_back_the_same_attributes() -> None:
    record = TrialRecord.from_attributes(STORED)
    assert record.rung == 1 and record.promoted_from == 3 and record.costs["params"] == 2236682
    assert record.latencies["cpu"] == Latency(1.5, "whole", "onnxruntime", 1.7, 0.9, 1.35)
    assert record.latencies["cpu"].measured_whole and not record.latencies["jetson-nano"].measured_whole
    assert record.scores == {"synflow": 41.5} and record.rung_accuracies == {0: 0.4, 1: 0.5}
    assert record.evaluation == Evaluation(0.5, 1.2, 3.0, 8, None, "a1b2c3-f00d-rung1.pt", 3)
    assert record.attributes() == STORED


def test_values_by_objective_column() -> None:
    record = TrialRecord.from_attributes(STORED)
    assert [record.value(c) for c in ("accuracy", "flops", "latency_ms@cpu", "synflow", "latency_ms@gpu")] == [
        0.5, 6.1e6, 1.5, 41.5, None]
    assert latency_column("ratio", "cpu") == "latency_ratio@cpu"


def test_an_empty_record_stores_nothing_and_writes_only_what_changed() -> None:
    assert TrialRecord().attributes() == {}
    study = optuna.create_study()
    trial = study.ask()
    record = TrialRecord(archid="x", fingerprint="f")
    record.write(trial)
    written = []
    trial.set_user_attr = lambda key, value: written.append(key)  # type: ignore[method-assign]
    record.feasible = False
    record.write(trial)
    assert written == ["feasible", "constraint_violations"]


def test_a_queued_record_reaches_the_trial_that_runs_it() -> None:
    study = optuna.create_study()
    TrialRecord(rung=2, promoted_from=0, preset="baseline").enqueue(study, {})
    assert TrialRecord.read(study.ask()) == TrialRecord(rung=2, promoted_from=0, preset="baseline")


def test_study_record_round_trip() -> None:
    study = optuna.create_study()
    StudyRecord(fingerprint="abc", data={"name": "digits"}).write(study)
    assert StudyRecord.read(study) == StudyRecord(fingerprint="abc", data={"name": "digits"})


def _offences(path: Path, *, names: bool = True) -> list[str]:
    """Lines of ``path`` that touch Optuna's user attributes or (``names``) spell a per-device stored name."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Attribute) and node.attr in ("user_attrs", "set_user_attr"):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} .{node.attr}")
        elif isinstance(node, ast.keyword) and node.arg == "user_attrs" and not (
                isinstance(node.value, ast.Dict) and not node.value.keys):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} user_attrs=")
        elif names and isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith(
                ("latency_ms@", "latency_source@", "latency_runtime@", "latency_estimate_ms@", "latency_ratio@",
                 "latency_reference_ms@", "val_accuracy@rung")):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value!r}")
    return found


@pytest.mark.parametrize("folder", ["fusionnas", "benchmarks"])
def test_only_the_record_module_names_trial_attributes(folder: str) -> None:
    """Code reads and writes trials through the record; the stored names live in one module."""
    paths = [p for p in sorted((ROOT / folder).rglob("*.py")) if p != RECORD_MODULE]
    offences = [line for path in paths for line in _offences(path)]
    assert not offences, "\n".join(offences)


def test_tests_read_trials_through_the_record_too() -> None:
    """Tests build and read trials with the record (frame columns and objective names they may spell)."""
    paths = [p for p in sorted((ROOT / "tests").rglob("*.py")) if p != Path(__file__).resolve()]
    offences = [line for path in paths for line in _offences(path, names=False)]
    assert not offences, "\n".join(offences)
