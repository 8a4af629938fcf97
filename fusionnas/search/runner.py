"""Run a study: create or load it, enqueue the presets, optimise until the study has its trials.

``n_trials`` is the study's total, not this run's: a run stops once the study
holds that many trials (finished, or running in any worker), so running the
same command again resumes an interrupted study and finishes at once when
it is complete; raise it to add trials. Trials interrupted by Ctrl-C, and
trials failed by a lost heartbeat that were re-queued, do not count.
``timeout_s`` bounds this run: no new trial starts after it.

The study's user attributes hold the config's ``fingerprint`` (space,
dataset, objectives, budget): loading a study under the same name with a
different fingerprint is an error, so results measured under other terms are
never mixed.

Ctrl-C (SIGINT) or SIGTERM stops the run: the running trial is marked FAIL
(``failure_reason`` ``interrupted``), everything stored stays, and
:class:`SearchInterrupted` (a ``KeyboardInterrupt``) is raised; running the
study again resumes it. A worker killed outright (SIGKILL, a lost machine)
leaves its trial RUNNING until the heartbeat of an SQL storage fails it.
"""
from __future__ import annotations

import logging
import math
import os
import signal
import socket
import threading
import time
import warnings
import zlib
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import optuna
from optuna.trial import TrialState

from fusionnas.evaluators.data import get_dataset
from fusionnas.evaluators.proxy import ProxyBudget, resolve_device
from fusionnas.search.objective import SearchObjective, TrialFailed, _fail_stale_trials
from fusionnas.search.storage import StorageOptions, display_url, open_storage, storage_file
from fusionnas.spaces import get_space

if TYPE_CHECKING:
    from fusionnas.search.config import StudyConfig

__all__ = ["SearchProgress", "SearchInterrupted", "StudyMismatchError", "StudyNotFoundError", "run_study", "open_study",
           "artifacts_dir", "count_trials", "format_progress"]

logger = logging.getLogger(__name__)

MAX_CONSECUTIVE_FAILURES = 5  # this run stops after so many failed trials in a row
_FINGERPRINT_POLLS = 20  # x 0.1 s: how long to wait for a study another worker is creating


class SearchInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped the search; ``study`` holds everything finished before it."""

    def __init__(self, study: optuna.Study, trial_number: int | None) -> None:
        super().__init__(f"interrupted during trial {trial_number}")
        self.study = study
        self.trial_number = trial_number


class StudyNotFoundError(ValueError):
    """The storage has no study of that name."""


class StudyMismatchError(ValueError):
    """The storage holds a study of this name that was run with another config."""


@dataclass(frozen=True)
class SearchProgress:
    """Where the study stands after one trial (what the CLI prints)."""

    trial: optuna.trial.FrozenTrial
    done: int  # trials counted towards the total
    target: int | None
    feasible: int  # COMPLETE and feasible
    failed: int
    frontier: int  # feasible trials on the Pareto frontier
    best: dict[str, tuple[float, int]] = field(default_factory=dict)  # objective -> (value, trial)
    elapsed_s: float = 0.0


def artifacts_dir(config: StudyConfig, storage: str | None = None) -> Path:
    """``<study name>-artifacts`` beside the SQLite/journal file, else beside the study file."""
    path = storage_file(storage or config.storage)
    base = path.parent if path is not None else (config.path.parent if config.path else Path.cwd())
    return base / f"{config.name}-artifacts"


def open_study(config: StudyConfig, storage: str | None = None, *, create: bool = False,
               options: StorageOptions | None = None) -> optuna.Study:
    """The study of ``config`` in ``storage`` (default: the config's), created if ``create``.

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
            try:  # the database lets exactly one worker create the study: it samples with the file's seed
                study = optuna.create_study(study_name=config.name, storage=backend,
                                            directions=config.directions, sampler=config.make_sampler())
            except optuna.exceptions.DuplicatedStudyError:  # joining or resuming: a seed of its own
                sampler = replace(config.sampler, seed=_worker_seed(config.sampler.seed)).make_sampler()
                study = optuna.load_study(study_name=config.name, storage=backend, sampler=sampler)
        else:
            names = [s.study_name for s in optuna.get_all_study_summaries(backend, include_best_trial=False)]
            if config.name not in names:
                raise StudyNotFoundError(f"storage {display_url(url)} has no study {config.name!r} "
                                 f"(it has: {', '.join(names) or 'none'}); run `fusionnas search` first")
            study = optuna.load_study(study_name=config.name, storage=backend, sampler=config.make_sampler())
    finally:
        optuna.logging.set_verbosity(quiet)
    stored = study.user_attrs.get("fingerprint")
    for _ in range(_FINGERPRINT_POLLS):  # another worker may have created it a moment ago
        if stored is not None:
            break
        time.sleep(0.1)
        stored = optuna.load_study(study_name=config.name, storage=backend).user_attrs.get("fingerprint")
    if stored is None and create:
        study.set_user_attr("fingerprint", config.fingerprint)
        study.set_user_attr("config", config.to_dict())
        with warnings.catch_warnings():  # metric names are "experimental" in Optuna 5
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(config.metric_names)
    elif stored is not None and stored != config.fingerprint:
        raise StudyMismatchError(
            f"study {config.name!r} in {display_url(url)} was run with fingerprint {stored} (space, dataset, "
            f"objectives, budget), this study file has {config.fingerprint}; give the study another name "
            f"or use another storage")
    return study


def _worker_seed(seed: int | None) -> int:
    """A sampler seed for a worker that joins (or resumes) a study: the file's seed mixed with
    this process's host and pid, so that workers do not all propose the same architectures."""
    salt = zlib.crc32(f"{socket.gethostname()}:{os.getpid()}".encode())
    return ((seed or 0) * 1_000_003 + salt) % 2**32


def count_trials(study: optuna.Study) -> int:
    """Trials that count towards ``n_trials``: all but waiting ones, interrupted ones and retried ones."""
    trials = study.get_trials(deepcopy=False)
    retried = {t.system_attrs.get("failed_trial") for t in trials} - {None}
    return sum(
        1 for t in trials
        if t.state != TrialState.WAITING
        and not (t.state == TrialState.FAIL
                 and (t.user_attrs.get("failure_reason") == "interrupted" or t.number in retried))
    )


def run_study(
    config: StudyConfig,
    n_trials: int | None = None,
    storage: str | None = None,
    progress: bool | Callable[[SearchProgress], None] = True,
    *,
    timeout_s: float | None = None,
    options: StorageOptions | None = None,
    device: str = "auto",
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

    Raises:
        SearchInterrupted: Ctrl-C; the running trial is recorded as failed.
    """
    target = n_trials if n_trials is not None else config.n_trials
    if target is not None and target < 1:
        raise ValueError(f"n_trials must be >= 1, got {target}")
    timeout_s = timeout_s if timeout_s is not None else config.timeout_s
    if timeout_s is not None and not timeout_s > 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout_s}; leave it out to run until n_trials")
    ProxyBudget(device=device)  # a bad device name fails here, not in every trial
    resolve_device(device)
    url = storage or config.storage
    # Everything a user can get wrong is checked before the study is created or changed.
    existing = _existing_study(config, url, options)
    if existing is not None:
        _fail_stale_trials(existing)  # a killed worker's trial must not count as done
    if existing is not None and target is not None and count_trials(existing) >= target:
        logger.info("study %r already has %d of %d trials", config.name, count_trials(existing), target)
        return existing
    data = get_dataset(config.dataset.name, config.dataset.root, seed=config.seed,
                       val_fraction=config.dataset.val_fraction)
    objective = SearchObjective(config, data, artifacts_dir(config, url), device=device)
    _check_latency_tables(config, get_space(config.space), objective)
    _check_cheapest(config, get_space(config.space), objective)
    study = open_study(config, url, create=True, options=options)
    _enqueue_presets(config, study)
    report = progress if callable(progress) else (_log_progress if progress else None)
    start = time.monotonic()
    failures = 0
    stop = _StopSignal()

    def after_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        nonlocal failures
        failures = failures + 1 if trial.state == TrialState.FAIL else 0
        if report is not None:
            report(summarize(study, trial, target, time.monotonic() - start))
        done = target is not None and count_trials(study) >= target
        if done or failures >= MAX_CONSECUTIVE_FAILURES or stop.requested:
            study.stop()

    def guarded(trial: optuna.Trial) -> list[float]:
        if stop.requested:  # the signal came between two trials
            trial.set_user_attr("failure_reason", "interrupted")
            raise KeyboardInterrupt
        with stop.armed():
            return objective(trial)

    try:
        with stop.installed():
            study.optimize(guarded, timeout=timeout_s, callbacks=[after_trial], catch=(TrialFailed,),
                           gc_after_trial=True)
    except KeyboardInterrupt:
        with _signals_ignored():
            number = _abort_running(objective.current_trial)
        raise SearchInterrupted(study, number) from None
    if stop.requested:
        raise SearchInterrupted(study, None)
    if failures >= MAX_CONSECUTIVE_FAILURES:
        last = study.get_trials(deepcopy=False)[-1]
        raise ValueError(f"the last {failures} trials failed (last: {last.user_attrs.get('failure_reason')}); "
                         f"stopping, since the cause looks systematic: fix it and run again to resume")
    return study


class _StopSignal:
    """SIGINT/SIGTERM during a trial interrupt it; between trials they stop the loop.

    Optuna marks a trial FAIL when its objective raises KeyboardInterrupt, but
    an interrupt inside Optuna's own bookkeeping (asking for a trial, storing
    its result) could leave a trial RUNNING; so the interrupt is raised only
    while the objective runs, and otherwise only recorded.
    """

    def __init__(self) -> None:
        self.requested: int | None = None
        self._armed = False

    def __call__(self, signum: int, frame: Any) -> None:
        self.requested = signum
        if self._armed:
            self._armed = False
            raise KeyboardInterrupt

    @contextmanager
    def armed(self) -> Iterator[None]:
        self._armed = True
        try:
            yield
        finally:
            self._armed = False

    @contextmanager
    def installed(self) -> Iterator[None]:
        """Handle the signals for the duration (only the main thread may install handlers)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


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
    """Queue the config's presets once per study; again only if a run was interrupted in one."""
    space = get_space(config.space)
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
            arch = space.sample(optuna.trial.FixedTrial(params))
            model = space.build(arch, num_classes=objective.data.num_classes)
            measured = objective._constraint_measures(objective._costs(arch, model, {}))
            for key, value in measured.items():
                best[key] = min(best.get(key, math.inf), value)
    config.check_feasible(best, "the smallest architecture of the space")


def _check_latency_tables(config: StudyConfig, space: Any, objective: SearchObjective) -> None:
    """Open every latency table the study names and predict its baseline and queued presets,
    so that a missing file or entry stops the run before the first trial, not in every trial."""
    archs = [space.baseline(), *(space.preset(name) for name in config.enqueue)]
    for device in config.latency_tables:
        if device in objective.latency_devices:
            table = objective._latency_model(device)
            for arch in archs:
                table.predict(arch)


def _abort_running(trial: optuna.Trial | None) -> int | None:
    """Mark the interrupted trial FAIL if Optuna did not get to it (interrupted outside the objective)."""
    if trial is None:
        return None
    try:
        storage = trial.study._storage
        frozen = storage.get_trial(trial._trial_id)
        if frozen.state == TrialState.RUNNING:
            storage.set_trial_user_attr(trial._trial_id, "failure_reason", "interrupted")
            storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        elif frozen.state != TrialState.FAIL:
            return None  # it finished before the interrupt
    except Exception as error:  # noqa: BLE001 (the storage itself may have been interrupted)
        logger.warning("could not mark trial %d as failed: %s", trial.number, error)
    return trial.number


@contextmanager
def _signals_ignored() -> Iterator[None]:
    """Further Ctrl-Cs during the clean-up are ignored, so that the clean-up completes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def summarize(study: optuna.Study, trial: optuna.trial.FrozenTrial, target: int | None,
              elapsed_s: float = 0.0) -> SearchProgress:
    """The :class:`SearchProgress` of ``study`` just after ``trial``."""
    from fusionnas.results.pareto import pareto_mask

    trials = study.get_trials(deepcopy=False)
    feasible = [t for t in trials if t.state == TrialState.COMPLETE and t.user_attrs.get("feasible", True)
                and t.values is not None and all(math.isfinite(v) for v in t.values)]
    names = study.metric_names or [f"value{i}" for i in range(len(study.directions))]
    maximize = [d == optuna.study.StudyDirection.MAXIMIZE for d in study.directions]
    best = {}
    for i, (name, up) in enumerate(zip(names, maximize)):
        if feasible:
            pick = (max if up else min)(feasible, key=lambda t: t.values[i])
            best[name] = (pick.values[i], pick.number)
    frontier = int(pareto_mask([t.values for t in feasible], maximize).sum()) if feasible else 0
    return SearchProgress(trial=trial, done=count_trials(study), target=target, feasible=len(feasible),
                          failed=sum(t.state == TrialState.FAIL for t in trials), frontier=frontier, best=best,
                          elapsed_s=elapsed_s)


def format_progress(p: SearchProgress) -> str:
    """One line per trial, e.g. ``[3/16] trial 2 complete: ... | feasible 3, frontier 2, best ...``."""
    t = p.trial
    head = f"[{p.done}/{p.target}]" if p.target else f"[{p.done}]"
    state = t.state.name.lower()
    if t.state == TrialState.FAIL:
        what = f"failed ({t.user_attrs.get('failure_reason', 'unknown')})"
    elif t.state == TrialState.PRUNED:
        what = "pruned (prefiltered)" if t.user_attrs.get("prefiltered") else "pruned"
    elif not t.user_attrs.get("feasible", True):
        over = ", ".join(t.user_attrs.get("constraint_violations", {}))
        what = f"infeasible ({over} over the limit), not trained"
    else:
        what = state
        if "reused_from" in t.user_attrs:
            what += f" (reused trial {t.user_attrs['reused_from']})"
    best = ", ".join(f"{name} {_short(v)} (#{n})" for name, (v, n) in p.best.items())
    return (f"{head} trial {t.number} {t.user_attrs.get('archid', '')} {what} | feasible {p.feasible}, "
            f"failed {p.failed}, frontier {p.frontier}; best {best or '-'} [{p.elapsed_s:.0f} s]")


def _short(value: float) -> str:
    magnitude = abs(value)
    if magnitude >= 1e6:
        return f"{value / 1e6:.1f}M"
    if magnitude >= 1e3:
        return f"{value / 1e3:.1f}k"
    return f"{value:.4g}"


def _log_progress(p: SearchProgress) -> None:
    logger.info("%s", format_progress(p))
