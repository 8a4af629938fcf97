"""Run a study: create or load it, enqueue the presets, run trials until the study has its total.

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

The study's user attributes hold the config's ``fingerprint`` (space,
dataset, objectives, budget): loading a study under the same name with a
different fingerprint is an error, so results measured under other terms are
never mixed.

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
import math
import os
import socket
import time
import warnings
import zlib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState

from fusionnas.errors import UserError
from fusionnas.evaluators.data import get_dataset
from fusionnas.evaluators.device_profiles import MEASURABLE_DEVICES
from fusionnas.evaluators.proxy import ProxyBudget, resolve_device, train_proxy
from fusionnas.interrupts import STOP
from fusionnas.search.artifacts import artifacts_dir, claim_artifacts
from fusionnas.search.coordination import fail_stale_trials, heartbeat, storage_lock, study_lock
from fusionnas.search.objective import SearchObjective, Trainer, TrialFailed
from fusionnas.search.progress import SearchProgress, count_trials, log_progress, summarize
from fusionnas.search.rungs import Rungs
from fusionnas.search.storage import StorageOptions, display_url, open_storage, storage_file
from fusionnas.spaces import baseline_or_none, choices_fingerprint

if TYPE_CHECKING:
    from fusionnas.search.config import StudyConfig

__all__ = ["SearchInterrupted", "SearchFailed", "StudyMismatchError", "StudyNotFoundError",
           "run_study", "open_study", "artifacts_dir", "study_data"]

logger = logging.getLogger(__name__)

MAX_CONSECUTIVE_FAILURES = 5  # this run stops after so many failed trials in a row
DATA_KEY = "data"  # study user attribute: the dataset's name, classes, normalisation and image shape


class SearchInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped the search; ``study`` (None before it was opened) holds everything finished."""

    def __init__(self, study: optuna.Study | None, trial_number: int | None) -> None:
        super().__init__(f"interrupted during trial {trial_number}" if trial_number is not None else "interrupted")
        self.study = study
        self.trial_number = trial_number


class SearchFailed(UserError):
    """Several trials in a row failed: the cause looks systematic (a bad setting, a broken device)."""


class StudyNotFoundError(UserError):
    """The storage has no study of that name."""


class StudyMismatchError(UserError):
    """The storage holds a study of this name that was run with another config."""


def open_study(config: StudyConfig, storage: str | None = None, *, create: bool = False,
               options: StorageOptions | None = None) -> optuna.Study:
    """The study of ``config`` in ``storage`` (default: the config's), created if ``create``.

    Creating the study and recording its fingerprint happen under the study's
    lock, so a worker that joins sees either no study or one with its
    fingerprint.

    Raises:
        StorageError: the storage cannot be opened.
        StudyNotFoundError: no such study (``create`` False).
        StudyMismatchError: the stored study was run with another fingerprint.
    """
    url = storage or config.storage
    backend = open_storage(url, options, must_exist=not create)
    quiet = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created" line
    try:
        if create:
            with storage_lock(backend, config.name):
                study = _create_or_join(config, backend)
        else:
            names = [s.study_name for s in optuna.get_all_study_summaries(backend, include_best_trial=False)]
            if config.name not in names:
                raise StudyNotFoundError(f"storage {display_url(url)} has no study {config.name!r} "
                                         f"(it has: {', '.join(names) or 'none'}); run `fusionnas search` first")
            study = optuna.load_study(study_name=config.name, storage=backend, sampler=config.make_sampler())
    finally:
        optuna.logging.set_verbosity(quiet)
    stored = study.user_attrs.get("fingerprint")  # None: made by something else, adopted when joined
    if stored is not None and stored != config.fingerprint:
        raise StudyMismatchError(
            f"study {config.name!r} in {display_url(url)} was run with fingerprint {stored} (space, dataset, "
            f"objectives, budget), this study file has {config.fingerprint}; give the study another name "
            f"or use another storage")
    offered = choices_fingerprint(config.search_space())
    stored = study.user_attrs.get("space_choices")  # None: stored before choices were recorded
    if stored is not None and stored != offered:
        raise StudyMismatchError(
            f"study {config.name!r} in {display_url(url)} was run when space {config.space} offered other "
            f"choices (fingerprint {stored}, now {offered}: an operator or plugin was added or removed); give "
            f"the study another name, or load the same operators (study file `plugins`)")
    if stored is None and create:
        study.set_user_attr("space_choices", offered)
    return study


def study_data(config: StudyConfig, study: optuna.Study) -> dict[str, Any]:
    """The dataset's name, classes, normalisation and image shape the study trained with
    (:meth:`~fusionnas.evaluators.data.DataSplits.describe`), as recorded by its search; for a study
    stored before that, read from the dataset now (its name only where its files are not here)."""
    recorded = study.user_attrs.get(DATA_KEY)
    if recorded is not None:
        return dict(recorded)
    try:
        return get_dataset(config.dataset.name, config.dataset.root, seed=config.seed,
                           val_fraction=config.dataset.val_fraction).describe()
    except UserError:
        return {"name": config.dataset.name}


def _create_or_join(config: StudyConfig, backend: optuna.storages.BaseStorage) -> optuna.Study:
    """Under the study's lock: create the study (the one creator samples with the file's seed) or
    load it (a joining or resuming worker samples with a seed of its own)."""
    try:
        study = optuna.create_study(study_name=config.name, storage=backend, directions=config.directions,
                                    sampler=config.make_sampler())
    except optuna.exceptions.DuplicatedStudyError:
        sampler = replace(config.sampler, seed=_worker_seed(config.sampler.seed)).make_sampler()
        study = optuna.load_study(study_name=config.name, storage=backend, sampler=sampler)
    if study.user_attrs.get("fingerprint") is None:  # new, or created by something other than fusionnas
        study.set_user_attr("fingerprint", config.fingerprint)
        study.set_user_attr("config", config.to_dict())
        with warnings.catch_warnings():  # metric names are "experimental" in Optuna 5
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(config.metric_names)
    return study


def _worker_seed(seed: int | None) -> int:
    """A sampler seed for a worker that joins (or resumes) a study: the file's seed mixed with
    this process's host and pid, so that workers do not all propose the same architectures."""
    salt = zlib.crc32(f"{socket.gethostname()}:{os.getpid()}".encode())
    return ((seed or 0) * 1_000_003 + salt) % 2**32


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
    target = n_trials if n_trials is not None else config.n_trials
    if target is not None and target < 1:
        raise UserError(f"n_trials must be >= 1, got {target}")
    timeout_s = timeout_s if timeout_s is not None else config.timeout_s
    if timeout_s is not None and not timeout_s > 0:
        raise UserError(f"timeout must be > 0 seconds, got {timeout_s}; leave it out to run until n_trials")
    ProxyBudget(device=device)  # a bad device name fails here, not in every trial
    resolve_device(device)
    url = storage or config.storage
    report = progress if callable(progress) else (log_progress if progress else None)
    with STOP.installed(), STOP.deferred():
        # Everything a user can get wrong is checked before the study is created or changed.
        existing = _existing_study(config, url, options)
        if existing is not None and target is not None and _complete(existing, target):
            logger.info("study %r already has %d of %d trials", config.name, count_trials(existing), target)
            return existing
        try:
            STOP.check()
            data = get_dataset(config.dataset.name, config.dataset.root, seed=config.seed,
                               val_fraction=config.dataset.val_fraction, download=download)
            STOP.check()
            objective = SearchObjective(config, data, artifacts_dir(config, url), device=device, train=train)
            space = config.search_space()
            _check_latency_tables(config, space, objective)
            _check_cheapest(config, space, objective)
            STOP.check()
        except KeyboardInterrupt:
            raise SearchInterrupted(existing, None) from None
        study = open_study(config, url, create=True, options=options)
        claimed = claim_artifacts(config, url)
        if claimed != objective.artifacts:  # another study file of this name claimed the folder just now
            objective = SearchObjective(config, data, claimed, device=device, train=train)
        if study.user_attrs.get(DATA_KEY) is None:
            study.set_user_attr(DATA_KEY, data.describe())
        _enqueue_presets(config, study)
        _optimize(study, objective, target, timeout_s, report)
    return study


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
        trial = _next_trial(study, target, objective.rungs)
        if trial is None:
            return
        frozen = _run_trial(study, trial, objective)
        gc.collect()  # as Study.optimize(gc_after_trial=True): models and graphs of the trial go now
        failures = failures + 1 if frozen.state == TrialState.FAIL else 0
        if report is not None:
            report(summarize(study, frozen, target, time.monotonic() - start))
        if failures >= MAX_CONSECUTIVE_FAILURES:
            raise SearchFailed(f"the last {failures} trials failed (last: {frozen.user_attrs.get('failure_reason')}); "
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
            study.enqueue_trial(parent.params, user_attrs={"rung": rung, "promoted_from": parent.number})
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
            trial.set_user_attr("failure_reason", "interrupted")
            study.tell(trial, state=TrialState.FAIL)
            raise SearchInterrupted(study, trial.number) from None
        except BaseException:  # a bug: the trial fails, the traceback shows
            study.tell(trial, state=TrialState.FAIL)
            raise
    if state == TrialState.COMPLETE:
        return study.tell(trial, values)
    return study.tell(trial, state=state)


def _existing_study(config: StudyConfig, url: str, options: StorageOptions | None) -> optuna.Study | None:
    """The stored study of ``config``, or None when there is none yet; nothing is created."""
    path = storage_file(url)
    if path is not None and not path.is_file():
        if not path.parent.is_dir():
            open_storage(url, options)  # raises a StorageError naming the missing folder
        return None
    try:
        return open_study(config, url, options=options)
    except StudyNotFoundError:
        return None


def _enqueue_presets(config: StudyConfig, study: optuna.Study) -> None:
    """Queue the config's presets once per study (again only if a run was interrupted in one);
    under the study's lock, so that workers starting together queue them once."""
    space = config.search_space()
    with study_lock(study):
        settled = {
            t.user_attrs.get("preset") for t in study.get_trials(deepcopy=False)
            if t.state != TrialState.FAIL or t.user_attrs.get("failure_reason") != "interrupted"
        }
        for name in config.enqueue:
            if name not in settled:
                study.enqueue_trial(space.params(space.preset(name)), user_attrs={"preset": name})


def _check_cheapest(config: StudyConfig, space: Any, objective: SearchObjective) -> None:
    """Stop an impossible study before its first trial: some limit beats every small architecture.

    The candidates are the uniform architectures with the smallest expansion
    ratio, kernel and width, one per fusion and depthwise operator; each
    limit is checked against the smallest value any of them reaches.
    """
    limits = config.constraints.limits
    if not limits:
        return
    choices = space.choices()
    fusions = choices.get("head.fusion", ["conv"])
    depthwise = next((v for k, v in choices.items() if k.endswith(".depthwise")), ["conv"])
    best: dict[str, float] = {}
    for fusion in fusions:
        for dw in depthwise:
            params = {name: (fusion if name.endswith(("expand", "project", "fusion")) else
                             dw if name.endswith("depthwise") else min(values))
                      for name, values in choices.items()}
            STOP.check()
            arch = space.sample(optuna.trial.FixedTrial(params))
            model = space.build(arch, num_classes=objective.data.num_classes)
            measured = objective.costs.constraint_measures(objective.costs.costs(arch, model))
            for key, value in measured.items():
                best[key] = min(best.get(key, math.inf), value)
    config.check_feasible(best, "the smallest architecture of the space")


def _check_latency_tables(config: StudyConfig, space: Any, objective: SearchObjective) -> None:
    """Open every latency table the study names and predict its baseline and queued presets,
    so that a missing file or entry stops the run before the first trial, not in every trial.

    Latency measured here (cpu, cuda) is timed against the space's baseline: a
    space without one stops the run here, with the fix; other studies do without it.
    """
    if any(device in MEASURABLE_DEVICES for device in config.latency_runtimes):
        space.baseline()  # NoBaselineError names the fix
    if not config.latency_tables:
        return
    baseline = baseline_or_none(space)
    archs = [*([baseline] if baseline else []), *(space.preset(name) for name in config.enqueue)]
    for device in config.latency_tables:
        if device in objective.costs.latency_devices:
            table = objective.costs.latency_table(device)
            for arch in archs:
                table.predict(arch)
