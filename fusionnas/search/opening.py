"""Open a study and check it before any trial: what ``fusionnas search`` does before its loop.

A study's terms (fingerprint, config, metric names, the space's choices) are
stored in its :class:`~fusionnas.trial_record.StudyRecord` when it is
created; opening it under another fingerprint, or when the space offers other
choices, is an error, so results measured under other terms are never mixed.
:func:`check_study` stops a study that cannot run (a missing latency table
entry, a limit no architecture meets) before anything is stored.
"""
from __future__ import annotations

import math
import os
import socket
import warnings
import zlib
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState

from fusionnas.errors import UserError
from fusionnas.evaluators.data import get_dataset
from fusionnas.evaluators.device_profiles import MEASURABLE_DEVICES
from fusionnas.interrupts import STOP
from fusionnas.search.coordination import storage_lock, study_lock
from fusionnas.search.storage import StorageOptions, display_url, open_storage, storage_file
from fusionnas.spaces import baseline_or_none, choices_fingerprint
from fusionnas.trial_record import StudyRecord, TrialRecord

if TYPE_CHECKING:
    from fusionnas.search.config import StudyConfig
    from fusionnas.search.context import StudyContext

__all__ = ["StudyNotFoundError", "StudyMismatchError", "open_study", "existing_study", "adopt_study",
           "study_data", "enqueue_presets", "check_study"]


class StudyNotFoundError(UserError):
    """The storage has no study of that name."""


class StudyMismatchError(UserError):
    """The storage holds a study of this name that was run with another config."""


def open_study(config: StudyConfig, storage: str | None = None, *, create: bool = False,
               options: StorageOptions | None = None, joining: bool = False) -> optuna.Study:
    """The study of ``config`` in ``storage`` (default: the config's), created if ``create``.

    Creating the study and recording its fingerprint happen under the study's
    lock, so a worker that joins sees either no study or one with its
    fingerprint. A worker that creates the study samples with the file's
    seed; one that joins or resumes it (``joining``, or ``create`` when it
    exists) with a seed of its own.

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
            sampler = _joining_sampler(config) if joining else config.make_sampler()
            study = optuna.load_study(study_name=config.name, storage=backend, sampler=sampler)
    finally:
        optuna.logging.set_verbosity(quiet)
    record = StudyRecord.read(study)
    stored = record.fingerprint  # None: made by something else, adopted when joined
    if stored is not None and stored != config.fingerprint:
        raise StudyMismatchError(
            f"study {config.name!r} in {display_url(url)} was run with fingerprint {stored} (space, dataset, "
            f"objectives, budget), this study file has {config.fingerprint}; give the study another name "
            f"or use another storage")
    offered = choices_fingerprint(config.search_space())
    stored = record.space_choices  # None: stored before choices were recorded
    if stored is not None and stored != offered:
        raise StudyMismatchError(
            f"study {config.name!r} in {display_url(url)} was run when space {config.space} offered other "
            f"choices (fingerprint {stored}, now {offered}: an operator or plugin was added or removed); give "
            f"the study another name, or load the same operators (study file `plugins`)")
    return study


def study_data(config: StudyConfig, study: optuna.Study) -> dict[str, Any]:
    """The dataset's name, classes, normalisation and image shape the study trained with
    (:meth:`~fusionnas.evaluators.data.DataSplits.describe`), as recorded by its search; for a study
    stored before that, read from the dataset now (its name only where its files are not here)."""
    recorded = StudyRecord.read(study).data
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
        study = optuna.load_study(study_name=config.name, storage=backend, sampler=_joining_sampler(config))
    _record_terms(config, study)
    return study


def adopt_study(config: StudyConfig, study: optuna.Study) -> None:
    """Record ``config``'s terms on an existing ``study`` that lacks them (stored by something other than
    fusionnas, or before the space's choices were recorded), under the study's lock."""
    with study_lock(study):
        _record_terms(config, study)


def _record_terms(config: StudyConfig, study: optuna.Study) -> None:
    """Store the fingerprint, config, metric names and space choices ``study`` does not have yet."""
    record = StudyRecord.read(study)
    if record.fingerprint is None:  # new, or created by something other than fusionnas
        StudyRecord(fingerprint=config.fingerprint, config=config.to_dict()).write(study)
        with warnings.catch_warnings():  # metric names are "experimental" in Optuna 5
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(config.metric_names)
    if record.space_choices is None:
        StudyRecord(space_choices=choices_fingerprint(config.search_space())).write(study)


def _joining_sampler(config: StudyConfig) -> optuna.samplers.BaseSampler:
    """The sampler of a worker that joins or resumes a study (:func:`_worker_seed`)."""
    return replace(config.sampler, seed=_worker_seed(config.sampler.seed)).make_sampler()


def _worker_seed(seed: int | None) -> int:
    """A sampler seed for a worker that joins (or resumes) a study: the file's seed mixed with
    this process's host and pid, so that workers do not all propose the same architectures."""
    salt = zlib.crc32(f"{socket.gethostname()}:{os.getpid()}".encode())
    return ((seed or 0) * 1_000_003 + salt) % 2**32


def existing_study(config: StudyConfig, url: str, options: StorageOptions | None) -> optuna.Study | None:
    """The stored study of ``config``, opened to join it, or None when there is none yet; nothing is
    created or changed."""
    path = storage_file(url)
    if path is not None and not path.is_file():
        if not path.parent.is_dir():
            open_storage(url, options)  # raises a StorageError naming the missing folder
        return None
    try:
        return open_study(config, url, options=options, joining=True)
    except StudyNotFoundError:
        return None


def enqueue_presets(config: StudyConfig, study: optuna.Study) -> None:
    """Queue the config's presets once per study (again only if a run was interrupted in one);
    under the study's lock, so that workers starting together queue them once."""
    space = config.search_space()
    with study_lock(study):
        records = [(t, TrialRecord.read(t)) for t in study.get_trials(deepcopy=False)]
        settled = {record.preset for t, record in records if t.state != TrialState.FAIL or not record.interrupted}
        for name in config.enqueue:
            if name not in settled:
                TrialRecord(preset=name).enqueue(study, space.params(space.preset(name)))


def check_study(context: StudyContext) -> None:
    """Stop a study that cannot run before its first trial: a latency table that lacks an entry,
    a limit that no architecture of the space meets."""
    _check_latency_tables(context)
    _check_cheapest(context)


def _check_cheapest(context: StudyContext) -> None:
    """Stop an impossible study before its first trial: some limit beats every small architecture.

    The candidates are the uniform architectures with the smallest expansion
    ratio, kernel and width, one per fusion and depthwise operator; each
    limit is checked against the smallest value any of them reaches.
    """
    config, space = context.config, context.space
    if not config.constraints.limits:
        return
    best: dict[str, float] = {}
    for fusion in space.fusions:
        for dw in space.depthwise:
            STOP.check()
            arch = space.uniform(fusion, dw, size="smallest")
            model = space.build(arch, num_classes=context.data.num_classes)
            measured = context.costs.constraint_measures(context.costs.measure(arch, model))
            for key, value in measured.items():
                best[key] = min(best.get(key, math.inf), value)
    config.check_feasible(best, "the smallest architecture of the space")


def _check_latency_tables(context: StudyContext) -> None:
    """Open every latency table the study names and predict its baseline and queued presets,
    so that a missing file or entry stops the run before the first trial, not in every trial.

    Latency measured here (cpu, cuda) is timed against the space's baseline: a
    space without one stops the run here, with the fix; other studies do without it.
    """
    config, space = context.config, context.space
    if any(device in MEASURABLE_DEVICES for device in config.latency_runtimes):
        space.baseline()  # NoBaselineError names the fix
    if not config.latency_tables:
        return
    baseline = baseline_or_none(space)
    archs = [*([baseline] if baseline else []), *(space.preset(name) for name in config.enqueue)]
    for device in config.latency_tables:
        if device in context.costs.latency_devices:
            table = context.costs.latency_table(device)
            for arch in archs:
                table.predict(arch)
