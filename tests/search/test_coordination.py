"""The study lock makes a claim atomic, on every storage kind that workers share.

Two workers (two threads, each with its own storage connection, as two
processes would have) look for other trials of one architecture at the same
moment: each pauses right after reading the trials until the other has read
too. Without the lock both would find nothing and both train; with it the
second cannot read until the first has recorded its claim (the pause then
times out), so exactly one evaluates and the other waits for it.
"""
from __future__ import annotations

import threading

import optuna
import pytest

from fusionnas.search import open_storage
from fusionnas.search.coordination import claim_archid, study_lock
from fusionnas.trial_record import TrialRecord

pytestmark = [pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning"),
              pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed:UserWarning")]


def two_workers(url: str, name: str) -> tuple[list[optuna.Study], list[optuna.Trial]]:
    """Two handles on one new study, each with its own storage and one RUNNING trial."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.create_study(study_name=name, storage=open_storage(url), directions=["maximize"])
    studies = [optuna.load_study(study_name=name, storage=open_storage(url)) for _ in range(2)]
    return studies, [study.ask() for study in studies]


def pause_after_reading(studies: list[optuna.Study]) -> None:
    """Each study's ``get_trials`` waits (up to 1 s) for the other's before returning what it read."""
    barrier = threading.Barrier(len(studies), timeout=1.0)
    for study in studies:
        def paused(*args, _read=study.get_trials, **kwargs):
            found = _read(*args, **kwargs)
            try:
                barrier.wait()
            except threading.BrokenBarrierError:  # the other one waits for the lock, as it should
                pass
            return found

        study.get_trials = paused


def in_threads(*calls):
    results = [None] * len(calls)
    threads = [threading.Thread(target=lambda i=i, call=call: results.__setitem__(i, call()))
               for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    return results


def test_two_workers_claiming_one_archid_at_once_give_one_evaluator(storage_url) -> None:
    url, name = storage_url
    studies, trials = two_workers(url, name)
    pause_after_reading(studies)
    claims = in_threads(*(lambda t=t: claim_archid(t, "abc123", "fp") for t in trials))
    assert sorted(claim.evaluates for claim in claims) == [False, True]
    owner = trials[[claim.evaluates for claim in claims].index(True)]
    waiter = next(claim for claim in claims if not claim.evaluates)
    assert waiter.wait_for.number == owner.number
    assert TrialRecord.read(owner.study.get_trials(deepcopy=False)[owner.number]).archid == "abc123"


def test_a_failed_claimer_hands_the_archid_over_and_a_result_is_reused(storage_url) -> None:
    url, name = storage_url
    (first, second), (a, b) = two_workers(url, name)
    assert claim_archid(a, "abc123", "fp").evaluates
    assert claim_archid(b, "abc123", "fp").wait_for.number == a.number
    first.tell(a, state=optuna.trial.TrialState.FAIL)  # the claimer failed: its claim ends
    assert claim_archid(b, "abc123", "fp").evaluates
    TrialRecord(evaluated=True).write(b)
    second.tell(b, [0.5])
    c = first.ask()
    claim = claim_archid(c, "abc123", "fp")
    assert claim.reuse.number == b.number and not claim.evaluates
    assert claim_archid(c, "abc123", "other-budget").evaluates  # another fingerprint is another result


def test_the_lock_excludes_a_second_holder(storage_url) -> None:
    url, name = storage_url
    studies, _ = two_workers(url, name)
    inside, order = threading.Event(), []

    def first() -> None:
        with study_lock(studies[0]):
            order.append("first in")
            inside.set()
            threading.Event().wait(0.3)
            order.append("first out")

    def second() -> None:
        inside.wait(10)
        with study_lock(studies[1]):
            order.append("second in")

    in_threads(first, second)
    assert order == ["first in", "first out", "second in"]
