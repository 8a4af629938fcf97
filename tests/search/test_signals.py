"""SIGINT and SIGTERM at random moments of `fusionnas search`.

Each round resumes one study on SQLite or PostgreSQL with ``--n-trials`` one
above what it holds, so that a run goes through every phase: imports, loading
the data, asking for a trial, training, storing, and shutting down. Once the
process has installed its handlers (its SigCgt mask), the test waits a random
time within that span (fixed seeds, so a failure can be replayed), sends
SIGINT or SIGTERM, and in every second round a second signal while the worker
stops. Every run must end with 130 and the one ``interrupted:`` line, and no
trial may be left RUNNING.

A signal that finds the worker already ignoring it (SigIgn: it has decided
its exit code and is leaving, see ``StopSignal.hold_until_exit``) comes
after the run; that round must then end with 0 like an unsignalled run, and
a new moment is drawn.
"""
from __future__ import annotations

import random
import signal
import time

import optuna
import pytest
from optuna.trial import TrialState

from _studies import PROXY_TOML
from _workers import finish, handles_signals, ignores_signals, start_worker
from fusionnas.search import count_trials, open_storage

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

ROUNDS = 3  # signalled runs per storage: 6 in all
SIGNALS = (signal.SIGINT, signal.SIGTERM)


def started(folder, url: str, n_trials: int):
    worker = start_worker(folder, "--storage", url, "--n-trials", str(n_trials))
    deadline = time.monotonic() + 60
    while not handles_signals(worker.pid, *SIGNALS):
        assert worker.poll() is None, finish([worker], 1)
        assert time.monotonic() < deadline, "the worker never installed its signal handlers"
        time.sleep(0.002)
    return worker, time.monotonic()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_signals_at_random_moments_exit_130_and_leave_no_trial_running(kind, tmp_path, request) -> None:
    url = request.getfixturevalue("postgres_url") if kind == "postgresql" else f"sqlite:///{tmp_path / 'study.db'}"
    name = f"signals-{kind}-{tmp_path.name[-8:]}"
    (tmp_path / "study.toml").write_text(f'name = "{name}"\n' + PROXY_TOML.replace("steps = 2", "steps = 10"))
    rng = random.Random(f"signals-{kind}")

    def study() -> optuna.Study:
        return optuna.load_study(study_name=name, storage=open_storage(url))

    try:
        worker, since = started(tmp_path, url, 1)  # an unsignalled run: how long one run lasts
        [(code, out, err)] = finish([worker], timeout=120)
        span = time.monotonic() - since
        assert code == 0 and err == "", (out, err)
        signalled = late = 0
        while signalled < ROUNDS:
            before = count_trials(study())
            worker, since = started(tmp_path, url, before + 1)
            delay = rng.uniform(0, span)
            first, second = rng.sample(SIGNALS, 2)
            time.sleep(max(0.0, since + delay - time.monotonic()))
            after_the_run = worker.poll() is not None or ignores_signals(worker.pid, *SIGNALS)
            if worker.poll() is None:
                worker.send_signal(first)
                if signalled % 2 == 1:
                    time.sleep(rng.uniform(0, 0.3))
                    if worker.poll() is None:
                        worker.send_signal(second)
            [(code, out, err)] = finish([worker], timeout=120)
            where = f"round {signalled}, {first.name} {delay:.2f} s after the handlers (run {span:.1f} s)"
            trials = study().get_trials(deepcopy=False)
            assert [t.number for t in trials if t.state == TrialState.RUNNING] == [], where
            if after_the_run:
                assert code == 0 and err == "", (where, out[-1000:], err)
                late += 1
                assert late <= 3 * ROUNDS, "every moment came after the run: it must have got shorter"
                continue
            assert code == 130, (where, code, out[-1000:], err)
            lines = err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("interrupted: "), (where, err)
            assert count_trials(study()) in (before, before + 1), where
            signalled += 1
    finally:
        if kind == "postgresql":
            optuna.delete_study(study_name=name, storage=url)
