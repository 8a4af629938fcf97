"""Study-file additions for the runner: journal storages and latency tables."""
from __future__ import annotations

from pathlib import Path

import pytest

from fusionnas.search import StudyConfigError, parse_study_config

BASE = {"space": "mobilenetv2-cifar", "n_trials": 2, "dataset": "digits", "objectives": [{"metric": "accuracy"}]}


def parse(tmp_path: Path, **changes):
    return parse_study_config({**BASE, **changes}, tmp_path / "s.toml")


def test_journal_storages_resolve_beside_the_study(tmp_path) -> None:
    assert parse(tmp_path, storage="runs/s.log").storage == f"journal:///{tmp_path / 'runs/s.log'}"
    assert parse(tmp_path, storage="journal:///x.journal").storage == f"journal:///{tmp_path / 'x.journal'}"
    assert parse(tmp_path, storage="journal:////abs/x.log").storage == "journal:////abs/x.log"


def test_latency_tables(tmp_path) -> None:
    config = parse(tmp_path, latency_tables={"jetson-nano": "nano.json"},
                   objectives=[{"metric": "accuracy"}, {"metric": "latency", "device": "jetson-nano"}])
    assert config.latency_tables == {"jetson-nano": str(tmp_path / "nano.json")}
    without = parse(tmp_path, objectives=[{"metric": "accuracy"}, {"metric": "latency", "device": "jetson-nano"}])
    assert config.fingerprint != without.fingerprint  # another table, other latency values
    assert parse(tmp_path).fingerprint == parse(tmp_path, latency_tables={}).fingerprint
    with pytest.raises(StudyConfigError, match="latency_tables.jetson-nan: unknown device"):
        parse(tmp_path, latency_tables={"jetson-nan": "x.json"})
    with pytest.raises(StudyConfigError, match="latency_tables.cpu: expected a file name"):
        parse(tmp_path, latency_tables={"cpu": 3})
