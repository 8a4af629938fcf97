"""kind = "supernet": trials scored by inheritance in about a second, promotions train on, one supernet per study."""
from __future__ import annotations

import logging
import threading

import optuna
import pytest
import torch

from _studies import PROXY, study_config
from fusionnas.evaluators import get_dataset
from fusionnas.search import run_study
from fusionnas.search.shared_weights import StudySupernet
from fusionnas.spaces import get_space
from fusionnas.trial_record import TrialRecord

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
SUPERNET = {**PROXY, "budget": {**PROXY["budget"], "kind": "supernet", "supernet_steps": 4, "steps": 4,
                                "rungs": 2, "reduction": 2}}


@pytest.fixture(autouse=True)
def _quiet():
    optuna.logging.set_verbosity(optuna.logging.ERROR)


def test_rung_zero_inherits_and_promotions_train_on_from_it(tmp_path) -> None:
    config = study_config(tmp_path, SUPERNET, n_trials=6, enqueue=[])
    study = run_study(config, progress=False)
    trials = study.trials
    records = [TrialRecord.read(t) for t in trials]
    first = [r for r in records if r.rung == 0]
    promoted = [r for r in records if r.rung == 1]
    assert first and promoted and all(t.state.name == "COMPLETE" for t in trials)
    assert all(r.evaluation.supernet_steps == 4 and r.evaluation.proxy_steps == 0 for r in first)
    for record in promoted:
        parent = trials[record.promoted_from]
        assert record.evaluation.resumed_from == parent.number and record.evaluation.proxy_steps == 4
    assert (tmp_path / "tiny-artifacts" / f"supernet-{config.fingerprint}.pt").is_file()


def test_workers_train_the_study_supernet_once(tmp_path, caplog) -> None:
    config = study_config(tmp_path, SUPERNET)
    data = get_dataset("digits", seed=0).subsample(0.1, seed=0)
    space = get_space(config.space)
    workers = [StudySupernet(config, space, data, tmp_path / "artifacts", "cpu") for _ in range(2)]
    results = [None, None]

    def get(i: int) -> None:
        results[i] = workers[i].get()

    with caplog.at_level(logging.WARNING, logger="fusionnas"):
        threads = [threading.Thread(target=get, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert sum("training the study's supernet" in r.getMessage() for r in caplog.records) == 1
    assert all(torch.equal(results[0].shared[k], results[1].shared[k]) for k in results[0].shared)
