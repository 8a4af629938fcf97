"""Optuna's RDB storage on a real PostgreSQL server, as the distributed search uses it.

The server comes from the `postgres_url` fixture (tests/_postgres.py): a
throwaway cluster, or FUSIONNAS_POSTGRES_URL. Without PostgreSQL these tests
skip locally and fail under CI=true.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
import sqlalchemy.exc
from optuna.storages import RDBStorage
from optuna.trial import TrialState

import _postgres

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

# Optuna 4.9 renamed RDBStorage(failed_trial_callback=RetryFailedTrialCallback(...))
# to heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(...); the old
# names warn in 5.x and go in 6.0. Same behaviour: the stale trial is failed and a
# WAITING copy with the same parameters is queued, system_attrs["failed_trial"] = its number.
if hasattr(optuna.storages, "RetryHeartbeatStaleTrialCallback"):
    Retry = optuna.storages.RetryHeartbeatStaleTrialCallback
    RETRY_ARG = "heartbeat_stale_trial_callback"
else:  # pragma: no cover - Optuna < 4.9
    Retry = optuna.storages.RetryFailedTrialCallback
    RETRY_ARG = "failed_trial_callback"

# A worker process: the same storage settings as the tests, `n` trials of a
# trivial objective; with "hang", its first trial stalls (to be killed).
WORKER = r"""
import sys, time, warnings
from pathlib import Path
import optuna
warnings.simplefilter("ignore")
optuna.logging.set_verbosity(optuna.logging.WARNING)
url, name, n_trials, mode, marker = sys.argv[1:6]
if hasattr(optuna.storages, "RetryHeartbeatStaleTrialCallback"):
    retry = {"heartbeat_stale_trial_callback":
             optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=2)}
else:
    retry = {"failed_trial_callback": optuna.storages.RetryFailedTrialCallback(max_retry=2)}
storage = optuna.storages.RDBStorage(url, heartbeat_interval=1, grace_period=2, **retry)
study = optuna.load_study(study_name=name, storage=storage)

def objective(trial):
    x = trial.suggest_float("x", -1.0, 1.0)
    if mode == "hang":
        time.sleep(1.5)            # the heartbeat thread has recorded a heartbeat by now
        Path(marker).write_text(str(trial.number))
        time.sleep(120)            # killed here
    return x * x

study.optimize(objective, n_trials=int(n_trials))
"""


def make_storage(url: str) -> RDBStorage:
    return RDBStorage(url, heartbeat_interval=1, grace_period=2, **{RETRY_ARG: Retry(max_retry=2)})


def objective(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -1.0, 1.0)
    return x * x


@pytest.fixture
def study(postgres_url):
    """A fresh study on the server, deleted afterwards (the server may be shared)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = make_storage(postgres_url)
    name = f"test-{uuid.uuid4().hex[:12]}"
    study = optuna.create_study(study_name=name, storage=storage, direction="minimize",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    yield study
    optuna.delete_study(study_name=name, storage=storage)
    storage.engine.dispose()


def start_worker(url: str, name: str, n_trials: int, mode: str = "run",
                 marker: Path | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WORKER, url, name, str(n_trials), mode,
                             str(marker or "")], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def states(study: optuna.Study) -> list[TrialState]:
    return [t.state for t in study.get_trials(deepcopy=False)]


def test_postgres_storage_creates_study_and_runs_trials(postgres_url, study):
    assert postgres_url.startswith("postgresql+psycopg2://")
    study.optimize(objective, n_trials=5)
    # A second storage object (another process would do the same) sees the results.
    reloaded = optuna.load_study(study_name=study.study_name, storage=make_storage(postgres_url))
    assert [t.state for t in reloaded.trials] == [TrialState.COMPLETE] * 5
    assert reloaded.best_value == pytest.approx(min(t.value for t in study.trials))
    assert study.study_name in [s.study_name for s in optuna.get_all_study_summaries(
        make_storage(postgres_url), include_best_trial=False)]


def test_postgres_three_workers_complete_exactly_30_trials(postgres_url, study):
    workers = [start_worker(postgres_url, study.study_name, 10) for _ in range(3)]
    for worker in workers:
        out, _ = worker.communicate(timeout=120)
        assert worker.returncode == 0, out
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 30
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert sorted(t.number for t in trials) == list(range(30))  # no number given twice


def test_postgres_killed_worker_trial_fails_and_is_retried(postgres_url, study, tmp_path):
    marker = tmp_path / "running"
    worker = start_worker(postgres_url, study.study_name, 3, "hang", marker)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert worker.poll() is None, worker.communicate()[0]
            assert time.monotonic() < deadline, "the worker never started its trial"
            time.sleep(0.1)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
        worker.communicate()
    killed = int(marker.read_text())
    assert study.trials[killed].state == TrialState.RUNNING  # nobody has noticed yet

    # After the grace period (2 s without a heartbeat) the trial is stale: any
    # worker fails it when it starts a trial; here we call the same check directly.
    deadline = time.monotonic() + 20
    while study.trials[killed].state == TrialState.RUNNING:
        assert time.monotonic() < deadline, "the killed trial was never failed"
        time.sleep(0.5)
        optuna.storages.fail_stale_trials(study)
    assert study.trials[killed].state == TrialState.FAIL
    retries = [t for t in study.trials
               if Retry.retried_trial_number(t) == killed]
    assert [t.state for t in retries] == [TrialState.WAITING]
    assert retries[0].params == study.trials[killed].params

    # A new worker takes the WAITING retry first and completes the requested count.
    study.optimize(objective, callbacks=[optuna.study.MaxTrialsCallback(
        3, states=(TrialState.COMPLETE,))])
    retry = study.trials[retries[0].number]
    assert retry.state == TrialState.COMPLETE
    assert retry.params == study.trials[killed].params
    assert Retry.retry_history(retry) == [killed]
    assert states(study).count(TrialState.COMPLETE) == 3
    assert states(study).count(TrialState.FAIL) == 1
    assert TrialState.RUNNING not in states(study) and TrialState.WAITING not in states(study)


def test_postgres_wrong_password_is_a_clear_error(postgres_url):
    url = sqlalchemy.engine.make_url(postgres_url).set(password="not-the-password")
    with pytest.raises(sqlalchemy.exc.OperationalError) as info:
        RDBStorage(url.render_as_string(hide_password=False))
    message = str(info.value)
    assert "password authentication failed" in message
    assert "not-the-password" not in message


def test_postgres_unreachable_server_is_a_clear_error(postgres_url):
    url = sqlalchemy.engine.make_url(postgres_url).set(host="127.0.0.1",
                                                        port=_postgres.free_port())
    with pytest.raises(sqlalchemy.exc.OperationalError, match="(?i)connection refused"):
        RDBStorage(url.render_as_string(hide_password=False))


# The skip-or-fail logic of the fixture, without touching a server.

def _no_postgres(monkeypatch) -> None:
    monkeypatch.delenv(_postgres.ENV_URL, raising=False)
    monkeypatch.setattr(_postgres, "find_bindir", lambda: None)


def test_postgres_missing_skips_locally_with_install_hint(monkeypatch):
    _no_postgres(monkeypatch)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install postgresql"):
        with _postgres.postgres_url():
            pass


def test_postgres_missing_fails_in_ci(monkeypatch):
    _no_postgres(monkeypatch)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true.*not found"):
        with _postgres.postgres_url():
            pass


def test_postgres_url_from_environment_starts_nothing(monkeypatch):
    url = "postgresql+psycopg2://u:p@db.example:5432/nas"
    monkeypatch.setenv(_postgres.ENV_URL, url)
    monkeypatch.setattr(_postgres, "find_bindir", lambda: pytest.fail("looked for binaries"))
    with _postgres.postgres_url() as got:
        assert got == url


def test_postgres_find_bindir_none_without_binaries(monkeypatch):
    monkeypatch.setattr(_postgres.shutil, "which", lambda name: None)
    monkeypatch.setattr(_postgres.glob, "glob", lambda pattern: [])
    assert _postgres.find_bindir() is None
