"""What workers on one study decide together, one at a time, under a lock the storage provides.

Every decision that another worker must see before it makes its own is taken
inside :func:`study_lock`:

* whether the study still needs a trial, and asking for it (so that N workers
  end with exactly ``n_trials`` trials, and a WAITING trial is popped once);
* who evaluates an architecture (:func:`claim_archid`: exactly one worker
  trains an ``(archid, fingerprint)``, the others reuse its result);
* whether the presets are queued (once, however many workers start together);
* failing trials whose worker died (:func:`fail_stale_trials`: retried once).

The lock is the storage's own kind of lock, released by the server or the
kernel when a worker dies, so a killed worker never leaves it held:

* PostgreSQL: a transaction-level advisory lock (``pg_advisory_xact_lock``) on a
  connection of its own, keyed by the study name;
* a SQLite or journal file: an exclusive ``flock`` on ``<file>.fusionnas-lock``
  beside it (Unix; not for files on NFS, which SQLite does not support either);
* in-memory storages (one process): a thread lock. Other servers (MySQL) get a
  thread lock too, with a warning that workers in several processes may race.

The lock is not re-entrant; hold it only for short bookkeeping (the sampler
proposing a trial, a scan of the trials), never while training.

Optuna offers no public way to reach a study's storage or to run the
heartbeat that ``Study.optimize`` runs; the few private names needed are used
in this module only, each in one function that says so.
"""
from __future__ import annotations

import logging
import os
import threading
import time
import warnings
import weakref
import zlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from optuna.trial import TrialState

from fusionnas.trial_record import TrialRecord

if TYPE_CHECKING:
    import optuna

__all__ = ["LOCK_SUFFIX", "study_lock", "storage_lock", "file_lock", "flock_wait", "fail_stale_trials", "heartbeat",
           "Claim", "claim_archid"]

logger = logging.getLogger(__name__)

LOCK_SUFFIX = ".fusionnas-lock"  # beside a SQLite or journal file
_ADVISORY_NAMESPACE = zlib.crc32(b"fusionnas") - 2**31  # first key of pg_advisory_xact_lock(int4, int4)
_thread_locks: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_guard = threading.Lock()
_warned: set[str] = set()


# -- Optuna's private names, in one place --------------------------------------------------------

def _backend(study: optuna.Study) -> optuna.storages.BaseStorage:
    """The storage behind ``study``, unwrapped from Optuna's cache layer.

    Private: ``Study`` has no public accessor for its storage, and
    ``create_study``/``load_study`` wrap an ``RDBStorage`` in ``_CachedStorage``.
    """
    return _uncached(study._storage)


def _uncached(storage: optuna.storages.BaseStorage) -> optuna.storages.BaseStorage:
    from optuna.storages import _CachedStorage

    return storage._backend if isinstance(storage, _CachedStorage) else storage


def _journal_file(storage: optuna.storages.BaseStorage) -> str | None:
    """The file of a journal storage on a file (private: the backend keeps its path to itself)."""
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    backend = getattr(storage, "_backend", None) if isinstance(storage, JournalStorage) else None
    return backend._file_path if isinstance(backend, JournalFileBackend) else None


@contextmanager
def heartbeat(trial: optuna.Trial) -> Iterator[None]:
    """Beat ``trial``'s heartbeat while the block runs, as ``Study.optimize`` does around its objective.

    Private: Optuna runs heartbeats only inside ``optimize``; a loop that asks and
    tells by itself (to count trials under a lock) needs the same thread.
    """
    from optuna.storages._heartbeat import get_heartbeat_thread

    with get_heartbeat_thread(trial._trial_id, trial.study._storage):
        yield


def fail_stale_trials(study: optuna.Study) -> None:
    """Fail (and re-queue, per the storage's retry callback) trials whose worker stopped beating.

    Call it under :func:`study_lock`: two workers failing the same trial at
    once would queue its retry twice on SQLite.
    """
    import optuna
    from optuna.storages._heartbeat import is_heartbeat_enabled  # private: no public test for it

    if is_heartbeat_enabled(study._storage):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)


# -- the lock ------------------------------------------------------------------------------------

def study_lock(study: optuna.Study) -> AbstractContextManager[None]:
    """A context manager holding the study-wide lock (see the module docstring)."""
    return storage_lock(_backend(study), study.study_name)


def storage_lock(storage: optuna.storages.BaseStorage, study_name: str) -> AbstractContextManager[None]:
    """The lock of study ``study_name`` in ``storage``, which need not hold that study yet."""
    from optuna.storages import RDBStorage

    storage = _uncached(storage)
    if isinstance(storage, RDBStorage):
        dialect = storage.engine.dialect.name
        if dialect == "postgresql":
            return _advisory_lock(storage, study_name)
        database = storage.engine.url.database
        if dialect == "sqlite" and database not in (None, "", ":memory:"):
            return file_lock(database)
        if dialect != "sqlite":
            _warn_once(dialect)
    else:
        path = _journal_file(storage)
        if path is not None:
            return file_lock(path)
    return _thread_lock(storage)


@contextmanager
def _advisory_lock(storage: optuna.storages.RDBStorage, name: str) -> Iterator[None]:
    import sqlalchemy

    key = zlib.crc32(name.encode()) - 2**31
    with storage.engine.connect() as connection:
        connection.execute(sqlalchemy.text("SELECT pg_advisory_xact_lock(:ns, :key)"),
                           {"ns": _ADVISORY_NAMESPACE, "key": key})
        try:
            yield
        finally:
            connection.commit()  # ends the transaction, which releases the lock


def flock_wait(fd: int, operation: int, poll: Callable[[], None] | None = None) -> None:
    """``flock(fd, operation)`` (``fcntl.LOCK_EX`` or ``LOCK_SH``), waited for without polling, or
    with ``poll`` every 0.1 s while another holder has it (``poll`` may raise to stop waiting)."""
    import fcntl

    if poll is None:
        fcntl.flock(fd, operation)
        return
    while True:
        try:
            fcntl.flock(fd, operation | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            poll()
            time.sleep(0.1)


@contextmanager
def file_lock(path: str | os.PathLike[str], *, poll: Callable[[], None] | None = None,
              shared: bool = False) -> Iterator[None]:
    """An exclusive (or ``shared``) ``flock`` on the lock file beside ``path``.

    Waited for without polling, or with ``poll`` every 0.1 s while another
    holder has it (for a wait that may last minutes: ``poll`` may raise to
    stop waiting). ``flock`` belongs to the open file, so two threads of one
    process exclude each other as two processes do, and the kernel releases
    it if the worker dies.
    """
    import fcntl

    fd = os.open(os.fspath(path) + LOCK_SUFFIX, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        flock_wait(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX, poll)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _thread_lock(storage: object) -> AbstractContextManager[None]:
    with _guard:
        lock = _thread_locks.get(storage)
        if lock is None:
            lock = _thread_locks[storage] = threading.Lock()
    return lock


def _warn_once(dialect: str) -> None:
    if dialect not in _warned:
        _warned.add(dialect)
        logger.warning("no lock across processes for %s storages: workers in several processes may "
                       "overshoot n_trials or evaluate an architecture twice; use PostgreSQL, SQLite or "
                       "a journal file", dialect)


# -- who evaluates an architecture ---------------------------------------------------------------

@dataclass(frozen=True)
class Claim:
    """The outcome of :func:`claim_archid`.

    Exactly one of three: ``reuse`` (an evaluated trial of the archid: copy its
    result), ``wait_for`` (a running trial of another worker evaluates it: wait
    and claim again), or neither (this trial now owns the evaluation; ``costed``
    may hold a finished trial that measured only its costs).
    """

    reuse: optuna.trial.FrozenTrial | None = None
    wait_for: optuna.trial.FrozenTrial | None = None
    costed: optuna.trial.FrozenTrial | None = None

    @property
    def evaluates(self) -> bool:
        """True if this trial evaluates the architecture itself."""
        return self.reuse is None and self.wait_for is None


def claim_archid(trial: optuna.Trial, archid: str, fingerprint: str, *, rung: int = 0,
                 force: bool = False) -> Claim:
    """Decide, atomically across workers, whether ``trial`` evaluates ``archid`` at ``fingerprint``
    (and ``rung``, the ``rung`` user attribute, 0 where absent; :mod:`fusionnas.search.rungs`).

    Under :func:`study_lock`: an evaluated COMPLETE or PRUNED trial of the same
    archid and fingerprint is reused; else a RUNNING trial that claimed it is
    waited for (unless ``force``, after a long wait); else ``trial`` records
    its claim, the ``archid`` and ``fingerprint`` user attributes, before the
    lock is released, so that no other worker can claim it too. (Only a claim
    sets them on a trial still running, so a RUNNING trial that has them is
    evaluating.) A claimer that fails or dies (FAIL) releases its claim.
    """
    with study_lock(trial.study):
        records = {t.number: (t, TrialRecord.read(t)) for t in trial.study.get_trials(deepcopy=False)
                   if t.number != trial.number}
        same = {n: (t, r) for n, (t, r) in records.items()
                if (r.archid, r.fingerprint, r.rung) == (archid, fingerprint, rung)}
        done = [t for t, _ in same.values() if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
        evaluated = [t for t in done if same[t.number][1].evaluated]
        if evaluated:
            return Claim(reuse=min(evaluated, key=lambda t: t.number))
        running = [t for t, _ in same.values() if t.state == TrialState.RUNNING]
        if running and not force:
            return Claim(wait_for=min(running, key=lambda t: t.number))
        TrialRecord(archid=archid, fingerprint=fingerprint).write(trial)
    costed = max(done, key=lambda t: (t.state == TrialState.COMPLETE, -t.number)) if done else None
    return Claim(costed=costed)

