"""Workers that die, are stopped, or share a SQLite file.

Every worker is a separate process running the real `fusionnas search`. The
PostgreSQL tests use the ``postgres_url`` fixture (tests/_postgres.py): they
skip locally without PostgreSQL and fail under CI=true.

* SIGKILL mid-trial: the trial stays RUNNING until a later worker finds its
  heartbeat stale (``--heartbeat 1``: stale after 2 s), fails it and queues a
  copy, which that worker runs; the study still reaches its count.
* SIGINT or SIGTERM mid-trial: exit code 130, one line on stderr, the trial
  FAIL (``failure_reason`` ``interrupted``) and not counted; the same command
  resumes the same study.
* Two workers on one SQLite file: SQLite's locking serialises their writes.
"""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
import uuid
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.storages._rdb import models as rdb_models
from optuna.trial import TrialState
from sqlalchemy import create_mock_engine

from _studies import PROXY_TOML, ZERO_COST_TOML
from _workers import ended_normally, finish, has_study, start_worker, states, storage
from fusionnas.search import count_trials, open_storage
from fusionnas.trial_record import TrialRecord

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

# Trial 0 is the enqueued baseline, then random architectures; 30 proxy steps: about 2 s of training.
SLOW = PROXY_TOML.replace("steps = 2", "steps = 30")
GRACE_S = 2.5  # past the grace period (2 x --heartbeat 1) after the last heartbeat


def run_worker(folder: Path, *args: str, timeout: float = 120) -> tuple[int, str, str]:
    [result] = finish([start_worker(folder, *args)], timeout)
    return result


def wait_for_training(url: str, name: str, worker: subprocess.Popen, number: int,
                      timeout: float = 90) -> optuna.Study:
    """The study, once its trial ``number`` is RUNNING past its costs (training has started)."""
    deadline = time.monotonic() + timeout
    study = None
    while True:
        if study is None and has_study(url, name):
            study = optuna.load_study(study_name=name, storage=storage(url))
        trials = study.get_trials(deepcopy=False) if study is not None else []
        if len(trials) > number and trials[number].state == TrialState.RUNNING and \
                "flops" in TrialRecord.read(trials[number]).costs:
            return study
        assert worker.poll() is None, worker.communicate()
        assert time.monotonic() < deadline, f"trial {number} never started training"
        time.sleep(0.05)


def stop(worker: subprocess.Popen, signum: int) -> tuple[str, str]:
    try:
        worker.send_signal(signum)
        return worker.communicate(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()


@pytest.fixture
def pg_study(postgres_url, tmp_path):
    """A new slow proxy study on PostgreSQL: (folder with study.toml, URL, name); deleted afterwards."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    open_storage(postgres_url).engine.dispose()  # the tables exist (see test_workers_postgres.py)
    name = f"faults-{uuid.uuid4().hex[:8]}"

    def write(n_trials: int) -> None:
        (tmp_path / "study.toml").write_text(f'name = "{name}"\n' + SLOW.replace("n_trials = 3",
                                                                                 f"n_trials = {n_trials}"))

    yield tmp_path, postgres_url, name, write
    if has_study(postgres_url, name):
        optuna.delete_study(study_name=name, storage=storage(postgres_url))


def load(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=storage(url))


def test_postgres_killed_worker_trial_fails_is_retried_and_the_study_completes(pg_study) -> None:
    folder, url, name, write = pg_study
    write(n_trials=2)
    worker = start_worker(folder, "--storage", url, "--heartbeat", "1")
    study = wait_for_training(url, name, worker, number=0)
    stop(worker, signal.SIGKILL)
    killed = study.trials[0]
    assert killed.state == TrialState.RUNNING  # nobody knows yet
    time.sleep(GRACE_S)

    code, out, err = run_worker(folder, "--storage", url, "--heartbeat", "1")
    assert code == 0, (out, err)
    trials = load(url, name).trials
    assert [t.state for t in trials[:2]] == [TrialState.FAIL, TrialState.COMPLETE], states(trials)
    assert len(trials) == 3 and ended_normally(trials[2]), states(trials)  # a sampled architecture
    retry = trials[1]  # the WAITING copy runs first
    assert RetryHeartbeatStaleTrialCallback.retried_trial_number(retry) == 0
    assert retry.params == killed.params
    record = TrialRecord.read(retry)
    assert record.archid is not None and record.archid == TrialRecord.read(killed).archid
    assert record.preset == "baseline"
    assert record.reused_from is None and 0 <= record.evaluation.val_accuracy <= 1
    assert count_trials(load(url, name)) == 2  # the study's n_trials; the killed original does not count
    assert "[2/2] trial 2 " in out


def test_postgres_killed_worker_last_trial_is_retried(pg_study) -> None:
    folder, url, name, write = pg_study
    write(n_trials=1)
    worker = start_worker(folder, "--storage", url, "--heartbeat", "1")
    wait_for_training(url, name, worker, number=0)
    stop(worker, signal.SIGKILL)
    time.sleep(GRACE_S)

    code, out, err = run_worker(folder, "--storage", url, "--heartbeat", "1")
    assert code == 0, (out, err)
    trials = load(url, name).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert RetryHeartbeatStaleTrialCallback.retried_trial_number(trials[1]) == 0


def test_postgres_worker_stops_cleanly_on_sigint_and_the_study_resumes(pg_study) -> None:
    folder, url, name, write = pg_study
    write(n_trials=2)
    worker = start_worker(folder, "--storage", url, "--heartbeat", "1")
    study = wait_for_training(url, name, worker, number=1)
    out, err = stop(worker, signal.SIGINT)
    assert worker.returncode == 130, (out, err)
    assert err.strip().splitlines() == [
        "interrupted: trial 1 marked failed (interrupted); stored 2 trials (1 complete, 0 pruned, 1 failed), 1 "
        "counting towards n_trials (waiting, interrupted or retried trials do not); run the same command to resume"]
    trials = load(url, name).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL]
    assert TrialRecord.read(trials[1]).failure_reason == "interrupted"
    time.sleep(GRACE_S)  # had the trial been left RUNNING, its heartbeat would be stale now

    code, out, err = run_worker(folder, "--storage", url, "--heartbeat", "1")
    assert code == 0, (out, err)
    resumed = load(url, name)
    assert resumed._study_id == study._study_id
    trials = resumed.trials
    assert [t.state for t in trials[:2]] == [TrialState.COMPLETE, TrialState.FAIL], states(trials)
    assert len(trials) == 3 and ended_normally(trials[2]), states(trials)  # a sampled architecture
    assert RetryHeartbeatStaleTrialCallback.retried_trial_number(trials[2]) is None  # not re-queued
    assert count_trials(resumed) == 2
    complete = sum(t.state == TrialState.COMPLETE for t in trials)
    assert "[2/2] trial 2 " in out
    assert f"study {name}: 3 trials ({complete} complete, 0 pruned, {3 - complete} failed), 2 counting" in out


def test_postgres_worker_stopped_by_sigterm_during_a_preset_evaluates_it_on_resume(pg_study) -> None:
    folder, url, name, write = pg_study
    write(n_trials=1)
    worker = start_worker(folder, "--storage", url, "--heartbeat", "1")
    study = wait_for_training(url, name, worker, number=0)
    baseline = TrialRecord.read(study.trials[0]).archid
    assert baseline is not None
    out, err = stop(worker, signal.SIGTERM)
    assert worker.returncode == 130, (out, err)
    assert err.strip().splitlines() == [
        "interrupted: trial 0 marked failed (interrupted); stored 1 trial (0 complete, 0 pruned, 1 failed), 0 "
        "counting towards n_trials (waiting, interrupted or retried trials do not); run the same command to resume"]

    code, out, err = run_worker(folder, "--storage", url, "--heartbeat", "1")
    assert code == 0, (out, err)
    trials = load(url, name).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert TrialRecord.read(trials[1]).archid == baseline


def sqlite_study(folder: Path, n_trials: int) -> str:
    (folder / "study.toml").write_text(ZERO_COST_TOML.replace("n_trials = 4", f"n_trials = {n_trials}"))
    return f"sqlite:///{folder / 'study.db'}"


def test_sqlite_two_workers_share_one_store(tmp_path) -> None:
    url = sqlite_study(tmp_path, 6)
    # The file and tables exist, as after any first run (test_sqlite_workers_started_on_a_new_file
    # covers two workers creating them).
    open_storage(url).engine.dispose()
    results = finish([start_worker(tmp_path, "--storage", url) for _ in range(2)], timeout=180)
    for code, out, err in results:
        assert code == 0, (out, err)
        assert "locked" not in err and err.strip() == "", err
    study = optuna.load_study(study_name="study", storage=url)
    trials = study.trials
    assert Counter(t.state for t in trials) == {TrialState.COMPLETE: len(trials)}
    assert sorted(t.number for t in trials) == list(range(len(trials)))
    assert count_trials(study) == len(trials)
    # n_trials is the study's total: a worker stops when it is reached, counting the other's
    # running trial under the study's lock, so the two never start one trial too many.
    assert len(trials) == 6
    ran = [{int(line.split()[2]) for line in out.splitlines() if line.startswith("[")} for _, out, _ in results]
    assert all(ran) and not ran[0] & ran[1] and ran[0] | ran[1] == set(range(len(trials)))


def optuna_ddl() -> list[str]:
    """The statements that create Optuna's tables in SQLite."""
    statements: list[str] = []
    engine = create_mock_engine("sqlite://", lambda sql, *a, **k: statements.append(
        str(sql.compile(dialect=engine.dialect)).strip()))
    rdb_models.BaseModel.metadata.create_all(engine, checkfirst=False)
    return statements


def has_open(pid: int, path: Path) -> bool:
    fds = Path(f"/proc/{pid}/fd")
    try:
        return any(os.readlink(fd) == str(path) for fd in fds.iterdir())
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to see the worker open the file")
def test_sqlite_workers_started_on_a_new_file(tmp_path) -> None:
    """Two workers creating the tables of a new SQLite file at once.

    The test plays the first worker: it creates the tables in a write transaction
    and commits once the second worker has opened the file (and so looked for
    the tables and found none, then waits for the write lock, up to SQLite's
    5 s busy timeout).
    """
    url = sqlite_study(tmp_path, 1)
    path = tmp_path / "study.db"
    first = sqlite3.connect(path, isolation_level=None)
    try:
        first.execute("BEGIN IMMEDIATE")
        for statement in optuna_ddl():
            first.execute(statement)
        worker = start_worker(tmp_path, "--storage", url)
        deadline = time.monotonic() + 60
        while not has_open(worker.pid, path):
            assert worker.poll() is None, worker.communicate()
            assert time.monotonic() < deadline, "the worker never opened the file"
            time.sleep(0.02)
        time.sleep(1.5)
        first.execute("COMMIT")
    finally:
        first.close()
    out, err = worker.communicate(timeout=120)
    assert worker.returncode == 0, err
    assert [t.state for t in optuna.load_study(study_name="study", storage=url).trials] == [TrialState.COMPLETE]
