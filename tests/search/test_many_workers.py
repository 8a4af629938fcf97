"""Four `fusionnas search` workers started at once on one study, on each storage kind.

The workers are real processes on one study: PostgreSQL (the ``postgres_url``
fixture; skipped locally without a server, failed under CI=true), a SQLite
file and a journal file. To make the races likely, the budget is tiny (two
proxy steps); the test holds the study's lock while the four start, so that
all of them wait at their first step (joining the study) and go on together
(a start barrier, which also shows that they take the lock); and one
architecture is queued four times, so that the workers pop its copies within
milliseconds of each other and all try to evaluate it at once. Whatever the
interleaving:

* the study ends with exactly ``n_trials`` trials, each run by one worker;
* each architecture is trained once, the other trials of it reuse that result;
* each preset is queued once;
* every worker exits 0 with nothing on stderr.
"""
from __future__ import annotations

import os
import re
import subprocess
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from _postgres import waiting_on_a_lock
from _studies import PROXY_TOML
from _workers import ended_normally, finish, start_worker, states
from fusionnas.search import count_trials, open_storage
from fusionnas.search.coordination import LOCK_SUFFIX, storage_lock
from fusionnas.search.storage import storage_file
from fusionnas.spaces import get_space
from fusionnas.trial_record import TrialRecord

pytestmark = [pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning"),
              pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to see the workers wait")]

WORKERS = 4
TOTAL = 8
COPIES = 4  # one architecture queued this many times
PRESETS = ("baseline", "all-bft")
PROGRESS = re.compile(r"^\[\d+/\d+\] trial (\d+) ", re.MULTILINE)


def test_four_workers_started_together_share_the_study_exactly(storage_url, tmp_path) -> None:
    url, name = storage_url
    text = PROXY_TOML.replace("n_trials = 3", f"n_trials = {TOTAL}").replace(
        'enqueue = ["baseline"]', f"enqueue = {list(PRESETS)!r}".replace("'", '"'))
    (tmp_path / "study.toml").write_text(f'name = "{name}"\n' + text)
    space = get_space("mobilenetv2-cifar")
    twice = space.params(space.preset("all-wht"))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=name, storage=_storage(url), directions=["maximize", "minimize"])
    for _ in range(COPIES):
        study.enqueue_trial(twice)

    with storage_lock(open_storage(url), name):
        workers = [start_worker(tmp_path, "--storage", url) for _ in range(WORKERS)]
        deadline = time.monotonic() + 120
        while (waiting := _waiting(url, workers)) < WORKERS:
            assert all(w.poll() is None for w in workers), finish(workers, timeout=1)
            assert time.monotonic() < deadline, f"only {waiting} of {WORKERS} workers waited for the study's lock"
            time.sleep(0.05)
    results = finish(workers, timeout=300)

    for code, out, err in results:
        assert code == 0, (code, out[-2000:], err[-2000:])
        assert err.strip() == "", err[-2000:]
        assert out.splitlines()[-1].startswith(f"study {name}: {TOTAL} trials"), out[-500:]
    study = optuna.load_study(study_name=name, storage=_storage(url))
    trials = study.get_trials(deepcopy=False)
    records = {t.number: TrialRecord.read(t) for t in trials}
    queued = [t for t in trials if records[t.number].preset is not None or t.params == twice]
    assert [t.state for t in queued] == [TrialState.COMPLETE] * (len(PRESETS) + COPIES), states(trials)
    assert len(trials) == TOTAL and all(ended_normally(t) for t in trials), states(trials)  # the rest: sampled
    assert count_trials(study) == TOTAL
    ran = sorted(int(n) for _, out, _ in results for n in PROGRESS.findall(out))
    assert ran == list(range(TOTAL)), "a trial was run by two workers, or by none"

    assert Counter(r.preset for r in records.values() if r.preset is not None) == dict.fromkeys(PRESETS, 1)
    trained = Counter(r.archid for r in records.values() if r.reused_from is None)
    assert None not in trained, "a trial recorded no archid"
    assert [archid for archid, n in trained.items() if n > 1] == [], "an architecture was trained twice"
    copies = [t for t in trials if t.params == twice]
    assert len(copies) == COPIES and sum(records[t.number].reused_from is None for t in copies) == 1
    by_number = {t.number: t for t in trials}
    for trial in trials:
        record = records[trial.number]
        if record.reused_from is not None:
            source = by_number[record.reused_from]
            assert records[source.number].reused_from is None and records[source.number].evaluated
            assert record.archid is not None
            assert (records[source.number].archid, source.values) == (record.archid, trial.values)


def _storage(url: str):
    """An Optuna storage for the test's own reads (journal URLs are fusionnas's, not Optuna's)."""
    return open_storage(url) if url.startswith("journal:") else url


def _waiting(url: str, workers: list[subprocess.Popen]) -> int:
    """How many of ``workers`` wait for the study's lock: on PostgreSQL an advisory lock,
    else the lock file beside the storage file (which they hold open while they wait)."""
    path = storage_file(url)
    if path is None:
        return sum("pg_advisory_xact_lock" in query for query in waiting_on_a_lock(url))
    lock = str(path) + LOCK_SUFFIX
    return sum(any(_target(fd) == lock for fd in _fds(w.pid)) for w in workers)


def _fds(pid: int) -> list[Path]:
    try:
        return list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return []


def _target(fd: Path) -> str | None:
    try:
        return os.readlink(fd)
    except OSError:
        return None
