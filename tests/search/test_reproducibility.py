"""A study run twice with the same seed on one worker proposes and measures the same."""
from __future__ import annotations

import optuna
import pytest
import torch

from _studies import PROXY, study_config
from fusionnas.search import run_study
from fusionnas.trial_record import TrialRecord

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


def _outcome(study: optuna.Study) -> list[tuple]:
    """What must repeat: each trial's parameters, archid, accuracy, loss and objective values."""
    records = [TrialRecord.read(t) for t in study.trials]
    assert all(r.archid is not None for r in records)
    return [(t.number, t.params, r.archid, r.evaluation.val_accuracy, r.evaluation.val_loss, t.values)
            for t, r in zip(study.trials, records)]


def test_same_seed_on_one_worker_repeats_architectures_and_accuracies(tmp_path) -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        outcomes = []
        for run in range(2):
            folder = tmp_path / f"run{run}"
            folder.mkdir()
            config = study_config(folder, PROXY, n_trials=3, enqueue=["baseline"],
                                  sampler={"name": "tpe", "n_startup_trials": 2})
            torch.manual_seed(1000 + run)  # what ran before in the process must not matter
            outcomes.append(_outcome(run_study(config, progress=False, device="cpu")))
    finally:
        torch.use_deterministic_algorithms(deterministic)
    assert len(outcomes[0]) == 3 and all(o[3] is not None for o in outcomes[0])
    assert outcomes[0] == outcomes[1]
