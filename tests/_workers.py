"""`fusionnas search` worker processes for the multi-worker and signal tests."""
from __future__ import annotations

import functools
import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from fusionnas.trial_record import TrialRecord

# Many workers share two cores: one thread each; unbuffered so that progress lines arrive as printed.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def start_worker(folder: Path, *args: str, study: str = "study.toml") -> subprocess.Popen:
    """``fusionnas search STUDY ARGS`` in ``folder``, as the console script runs it."""
    return subprocess.Popen([sys.executable, "-m", "fusionnas.cli", "search", study, *args], cwd=folder, env=ENV,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(workers: list[subprocess.Popen], timeout: float) -> list[tuple[int, str, str]]:
    """(exit code, stdout, stderr) of every worker; any still running after ``timeout`` s is killed."""
    deadline = time.monotonic() + timeout
    results = []
    for worker in workers:
        try:
            out, err = worker.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            worker.kill()
            out, err = worker.communicate()
            err += "\n(killed by the test: still running)"
        results.append((worker.returncode, out, err))
    return results


def handles_signals(pid: int, *signums: int) -> bool:
    """Whether process ``pid`` has installed handlers for ``signums`` (the kernel's SigCgt mask)."""
    return _in_mask(pid, "SigCgt", signums)


def ignores_signals(pid: int, *signums: int) -> bool:
    """Whether process ``pid`` ignores ``signums`` (the kernel's SigIgn mask)."""
    return _in_mask(pid, "SigIgn", signums)


def _in_mask(pid: int, mask: str, signums: tuple[int, ...]) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    bits = int(status.split(f"{mask}:")[1].split()[0], 16)
    return all(bits >> (signum - 1) & 1 for signum in signums)


@functools.lru_cache(maxsize=None)
def storage(url: str) -> optuna.storages.RDBStorage:
    """One storage (one connection pool) per URL for all of a test's polling."""
    return optuna.storages.RDBStorage(url)


def has_study(url: str, name: str) -> bool:
    return name in [s.study_name for s in optuna.get_all_study_summaries(storage(url), include_best_trial=False)]


def ended_normally(trial: optuna.trial.FrozenTrial) -> bool:
    """COMPLETE, or FAIL because its training diverged: what a sampled architecture may end with.

    Workers that join or resume a study sample with seeds of their own (their pids), so their
    architectures differ from run to run, and a few random architectures diverge at the tests'
    budgets (batches of 8 at 8x8; measured 2026-12-04: 1 of 260 in 30 steps, 1 of 400 in 2):
    a result of the architecture, not a fault of the worker.
    """
    return trial.state == TrialState.COMPLETE or (
        trial.state == TrialState.FAIL and (TrialRecord.read(trial).failure_reason or "").startswith("diverged"))


def states(trials: list[optuna.trial.FrozenTrial]) -> list[tuple[int, str, str | None]]:
    """What an assertion on the trials' states shows when it fails."""
    return [(t.number, t.state.name, TrialRecord.read(t).failure_reason) for t in trials]
