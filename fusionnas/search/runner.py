"""Run a study: open and check it (:mod:`fusionnas.search.opening`), then ask, evaluate and tell
trials until the study has its total.

``n_trials`` is the study's total, not this run's: a run stops once the study
holds that many trials (finished, or running in any worker), so running the
same command again resumes an interrupted study and finishes at once when
it is complete; raise it to add trials. Trials interrupted by Ctrl-C, and
trials failed by a lost heartbeat that were re-queued, do not count.
``timeout_s`` bounds this run: no new trial starts after it.

Many workers (processes, machines) may run one study on one storage. Every
decision another worker must see is taken under the study's lock
(:mod:`fusionnas.search.coordination`): counting the trials and asking for the
next one, so the study ends with exactly ``n_trials``; queuing the presets,
once; who evaluates an architecture, once; failing a dead worker's trial.

Ctrl-C (SIGINT) or SIGTERM stops the run at the next safe point (between
phases, after the current training step, within 0.1 s while waiting): the
running trial is marked FAIL (``failure_reason`` ``interrupted``), everything
stored stays, and :class:`SearchInterrupted` (a ``KeyboardInterrupt``) is
raised; running the study again resumes it. No trial is left RUNNING. A
worker killed outright (SIGKILL, a lost machine) leaves its trial RUNNING
until the heartbeat of an SQL storage fails it.
"""
from __future__ import annotations

import gc
import logging
import time
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

import optuna
from optuna.trial import TrialState

from fusionnas.errors import UserError
from fusionnas.evaluators.data import get_dataset
from fusionnas.evaluators.proxy import ProxyBudget, resolve_device, train_proxy
from fusionnas.interrupts import STOP
from fusionnas.search.artifacts import artifacts_dir, claim_artifacts
from fusionnas.search.context import StudyContext
from fusionnas.search.coordination import fail_stale_trials, heartbeat, study_lock
from fusionnas.search.objective import SearchObjective, Trainer, TrialFailed
from fusionnas.search.opening import adopt_study, check_study, enqueue_presets, existing_study, open_study
from fusionnas.search.progress import SearchProgress, count_trials, log_progress, summarize
from fusionnas.search.rungs import Rungs
from fusionnas.search.storage import StorageOptions
from fusionnas.trial_record import INTERRUPTED, StudyRecord, TrialRecord

if TYPE_CHECKING:
    from fusionnas.search.config import StudyConfig

__all__ = ["SearchInterrupted", "SearchFailed", "run_study"]

logger = logging.getLogger(__name__)

MAX_CONSECUTIVE_FAILURES = 5  # this run stops after so many failed trials in a row


class SearchInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped the search; ``study`` (None before it was opened) holds everything finished."""

    def __init__(self, study: optuna.Study | None, trial_number: int | None) -> None:
        super().__init__(f"interrupted during trial {trial_number}" if trial_number is not None else "interrupted")
        self.study = study
        self.trial_number = trial_number


class SearchFailed(UserError):
    """Several trials in a row failed: the cause looks systematic (a bad setting, a broken device)."""


def run_study(
    config: StudyConfig,
    n_trials: int | None = None,
    storage: str | None = None,
    progress: bool | Callable[[SearchProgress], None] = True,
    *,
    timeout_s: float | None = None,
    options: StorageOptions | None = None,
    device: str = "auto",
    train: Trainer = train_proxy,
    download: bool = False,
) -> optuna.Study:
    """Run ``config``'s study until it holds ``n_trials`` (default: the config's) trials.

    Args:
        config: the study.
        n_trials: the study's total (see the module docstring); None: the config's.
        storage: storage URL instead of the config's.
        progress: True logs a line per trial, a callable receives a :class:`SearchProgress`.
        timeout_s: no new trial after this many seconds of this run (default: the config's).
        options: heartbeat settings of RDB storages.
        device: where proxies train.
        train: how an architecture is trained (:data:`~fusionnas.search.objective.Trainer`).
        download: fetch the dataset's files when they are missing (CIFAR; needs the network).

    Raises:
        SearchInterrupted: Ctrl-C or SIGTERM; the running trial is recorded as failed.
        SearchFailed: the last trials all failed.
    """
    target, timeout_s = _run_limits(config, n_trials, timeout_s, device)
    url = storage or config.storage
    report = progress if callable(progress) else (log_progress if progress else None)
    with STOP.installed(), STOP.deferred():
        # Everything a user can get wrong is checked before the study is created or changed.
        existing = existing_study(config, url, options)
        if existing is not None and target is not None and _complete(existing, target):
            logger.info("study %r already has %d of %d trials", config.name, count_trials(existing), target)
            return existing
        try:
            STOP.check()
            data = get_dataset(config.dataset.name, config.dataset.root, seed=config.seed,
                               val_fraction=config.dataset.val_fraction, download=download)
            STOP.check()
            context = StudyContext.build(config, data, artifacts_dir(config, url), device=device)
            check_study(context)
            STOP.check()
        except KeyboardInterrupt:
            raise SearchInterrupted(existing, None) from None
        study, context = _begin(context, existing, url, options)
        _optimize(study, SearchObjective(context, train=train), target, timeout_s, report)
    return study


def _run_limits(config: StudyConfig, n_trials: int | None, timeout_s: float | None,
                device: str) -> tuple[int | None, float | None]:
    """This run's trial total and timeout (the config's unless given), checked with the device name."""
    target = n_trials if n_trials is not None else config.n_trials
    if target is not None and target < 1:
        raise UserError(f"n_trials must be >= 1, got {target}")
    timeout_s = timeout_s if timeout_s is not None else config.timeout_s
    if timeout_s is not None and not timeout_s > 0:
        raise UserError(f"timeout must be > 0 seconds, got {timeout_s}; leave it out to run until n_trials")
    ProxyBudget(device=device)  # a bad device name fails here, not in every trial
    resolve_device(device)
    return target, timeout_s


def _begin(context: StudyContext, existing: optuna.Study | None, url: str,
           options: StorageOptions | None) -> tuple[optuna.Study, StudyContext]:
    """Create (or adopt) the checked study, claim its artifacts folder, record its data and queue its presets."""
    config = context.config
    if existing is None:
        study = open_study(config, url, create=True, options=options)
    else:
        study = existing
        adopt_study(config, study)
    claimed = claim_artifacts(config, url)
    if claimed != context.artifacts:  # another study file of this name claimed the folder just now
        context = StudyContext.build(config, context.data, claimed, device=context.device)
    if StudyRecord.read(study).data is None:
        StudyRecord(data=context.data.describe()).write(study)
    enqueue_presets(config, study)
    return study, context


def _optimize(study: optuna.Study, objective: SearchObjective, target: int | None, timeout_s: float | None,
              report: Callable[[SearchProgress], None] | None) -> None:
    """Ask, evaluate and tell until the study is complete, time is up, or trials keep failing."""
    start = time.monotonic()
    # What exists now (modules, data, the objective) lives for the whole run: frozen out of
    # the collector, the per-trial collection below scans the newer objects only (0.30 -> 0.08 s a trial here).
    gc.freeze()
    try:
        _trials(study, objective, target, timeout_s, report, start)
    finally:
        gc.unfreeze()


def _trials(study: optuna.Study, objective: SearchObjective, target: int | None, timeout_s: float | None,
            report: Callable[[SearchProgress], None] | None, start: float) -> None:
    """The loop of :func:`_optimize`, ``start`` its clock's start."""
    failures = 0
    while True:
        if STOP.requested:
            raise SearchInterrupted(study, None)
        if timeout_s is not None and time.monotonic() - start >= timeout_s:
            return
        trial = _next_trial(study, target, objective.context.rungs)
        if trial is None:
            return
        frozen = _run_trial(study, trial, objective)
        gc.collect()  # as Study.optimize(gc_after_trial=True): models and graphs of the trial go now
        failures = failures + 1 if frozen.state == TrialState.FAIL else 0
        if report is not None:
            report(summarize(study, frozen, target, time.monotonic() - start))
        if failures >= MAX_CONSECUTIVE_FAILURES:
            raise SearchFailed(f"the last {failures} trials failed (last: {TrialRecord.read(frozen).failure_reason}); "
                               f"stopping, since the cause looks systematic: fix it and run again to resume")


def _complete(study: optuna.Study, target: int) -> bool:
    """Whether ``study`` holds ``target`` trials once a killed worker's trial no longer counts as done."""
    if count_trials(study) < target:
        return False
    with study_lock(study):
        fail_stale_trials(study)
        return count_trials(study) >= target


def _next_trial(study: optuna.Study, target: int | None, rungs: Rungs) -> optuna.Trial | None:
    """The next trial, or None when the study holds its ``target``; counting, promoting (a trial
    that earned its next rung comes first) and asking are one step."""
    with study_lock(study):
        fail_stale_trials(study)
        if target is not None and count_trials(study) >= target:
            return None
        promotion = rungs.next_promotion(study)
        if promotion is not None:
            parent, rung = promotion
            TrialRecord(rung=rung, promoted_from=parent.number).enqueue(study, parent.params)
        with warnings.catch_warnings():  # this loop runs the heartbeat as Study.optimize does
            warnings.filterwarnings("ignore", "Heartbeat of storage is supposed to be used", UserWarning)
            return study.ask()


def _run_trial(study: optuna.Study, trial: optuna.Trial, objective: SearchObjective) -> optuna.trial.FrozenTrial:
    """Evaluate ``trial`` and tell the study; whatever happens, the trial does not stay RUNNING."""
    values = None
    state = TrialState.COMPLETE
    with heartbeat(trial):
        try:
            values = objective(trial)
        except optuna.TrialPruned:
            state = TrialState.PRUNED
        except TrialFailed:
            state = TrialState.FAIL
        except KeyboardInterrupt:
            TrialRecord(failure_reason=INTERRUPTED).write(trial)
            study.tell(trial, state=TrialState.FAIL)
            raise SearchInterrupted(study, trial.number) from None
        except BaseException:  # a bug: the trial fails, the traceback shows
            study.tell(trial, state=TrialState.FAIL)
            raise
    if state == TrialState.COMPLETE:
        return study.tell(trial, values)
    return study.tell(trial, state=state)
