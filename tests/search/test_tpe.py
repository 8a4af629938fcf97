"""SnapshotTPESampler: Optuna's TPE, one read of the study per proposal, the same proposals."""
from __future__ import annotations

import warnings

import optuna
import pytest
from optuna.samplers import TPESampler
from optuna.trial import TrialState

from fusionnas.search import SnapshotTPESampler

CHOICES = ["conv", "wht", "dct", "bft"]


class CountingStorage(optuna.storages.InMemoryStorage):
    """Counts the reads of all trials, the call TPE repeats per parameter under constant_liar."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def get_all_trials(self, *args, **kwargs):  # noqa: D102
        self.reads += 1
        return super().get_all_trials(*args, **kwargs)


def _study_of_two_workers(sampler_cls: type, seed: int, *, multivariate: bool = False) -> tuple[list, list[int]]:
    """Proposals (parameters per trial) of a study with the states several workers leave:
    trials RUNNING for a while (another worker's), queued ones, failures, constraints;
    and the reads of all trials each proposal made."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = sampler_cls(seed=seed, n_startup_trials=5, constant_liar=True, multivariate=multivariate)
    storage = CountingStorage()
    study = optuna.create_study(storage=storage, directions=["maximize", "minimize"], sampler=sampler)
    study.enqueue_trial({"op0": "wht", "op1": "wht"})
    proposals, reads, running = [], [], []
    for i in range(24):
        if i == 12:
            study.enqueue_trial({"op2": "bft"})
        trial = study.ask()
        before = storage.reads
        params = [trial.suggest_categorical(f"op{j}", CHOICES) for j in range(8)]
        if i % 4 == 0:
            params.append(trial.suggest_categorical("kernel", [3, 5]))  # a parameter only some trials have
        reads.append(storage.reads - before)
        proposals.append(params)
        cost = sum(CHOICES.index(p) for p in params[:8] if isinstance(p, str))
        trial.set_constraint("flops", cost - 14.0)
        if i % 5 == 1:  # another worker's trial: it finishes three proposals later
            running.append((trial, i + 3))
        elif i % 7 == 3:
            study.tell(trial, state=TrialState.FAIL)
        else:
            study.tell(trial, [cost / 24 + (i % 3) / 10, 24.0 - cost])
        for other, due in [r for r in running if r[1] == i]:
            study.tell(other, [0.5, 10.0])
            running.remove((other, due))
    return proposals, reads


@pytest.mark.parametrize("multivariate", [False, True])
def test_it_proposes_exactly_what_tpe_proposes(multivariate) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for seed in (0, 1):
        plain, _ = _study_of_two_workers(TPESampler, seed, multivariate=multivariate)
        snapshot, _ = _study_of_two_workers(SnapshotTPESampler, seed, multivariate=multivariate)
        assert snapshot == plain
    assert _study_of_two_workers(SnapshotTPESampler, 2)[0] != snapshot  # the seed matters: not a constant


def test_a_proposal_reads_the_study_once() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    _, plain = _study_of_two_workers(TPESampler, 0)
    _, snapshot = _study_of_two_workers(SnapshotTPESampler, 0)
    assert min(plain[6:]) >= 8  # once per parameter after the random start
    assert snapshot == [1] * len(snapshot)
