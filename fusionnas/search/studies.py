"""The studies a storage holds: list them with their trial counts per state, delete one by name.

Both use Optuna's own API (``optuna.get_all_study_summaries``,
``optuna.delete_study``); a reading command never creates a storage file.
:func:`default_storages` finds the storages that ``fusionnas search`` uses by
default: each study file's ``storage``, else ``<file stem>.db`` beside it.
"""
from __future__ import annotations

import difflib
import tomllib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import optuna

from fusionnas.errors import UserError
from fusionnas.search._study_file import resolve_storage
from fusionnas.search.storage import StorageOptions, display_url, open_storage, storage_file

__all__ = ["STATES", "StoredStudy", "list_studies", "find_study", "delete_study", "default_storages"]

STATES = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")  # optuna.trial.TrialState names, as listed


@dataclass(frozen=True)
class StoredStudy:
    """One study of a storage: its name, the storage URL, trials per state and when it started."""

    name: str
    storage: str
    states: Mapping[str, int]  # every name of STATES -> its trials
    started: datetime | None

    @property
    def n_trials(self) -> int:
        """All its trials, whatever their state."""
        return sum(self.states.values())


def _open(url: str) -> optuna.storages.BaseStorage:
    return open_storage(url, StorageOptions(heartbeat_interval=None), must_exist=True)


def list_studies(url: str) -> list[StoredStudy]:
    """The studies in the storage ``url``, by name; a missing SQLite or journal file is an error."""
    storage = _open(url)
    studies = []
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        study = optuna.load_study(study_name=summary.study_name, storage=storage,
                                  sampler=optuna.samplers.RandomSampler())
        counts = Counter(t.state.name for t in study.get_trials(deepcopy=False))
        studies.append(StoredStudy(summary.study_name, url, {s: counts.get(s, 0) for s in STATES},
                                   summary.datetime_start))
    return sorted(studies, key=lambda s: s.name)


def find_study(url: str, name: str) -> StoredStudy:
    """Study ``name`` of the storage ``url``; an unknown name is a one-line error listing the others."""
    stored = {s.name: s for s in list_studies(url)}
    if name not in stored:
        close = difflib.get_close_matches(name, list(stored), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise UserError(f"storage {display_url(url)} has no study {name!r}; {hint}"
                        f"it has: {', '.join(stored) or 'none'}")
    return stored[name]


def delete_study(url: str, name: str) -> StoredStudy:
    """Delete study ``name`` (all its trials) from the storage ``url``; what it held.

    Files beside the storage (its artifacts folder: weights, latency tables) are kept.
    """
    stored = find_study(url, name)
    optuna.delete_study(study_name=name, storage=_open(url))
    return stored


def default_storages(folders: Iterable[str | Path] = (".", "studies")) -> list[str]:
    """The storages of the study files (``*.toml``) in ``folders``, as ``fusionnas search`` opens them.

    Each file's ``storage`` key (relative paths from its folder), else
    ``<file stem>.db`` beside it; SQLite and journal files that do not exist
    are left out, as are files that are not valid TOML.
    """
    urls: dict[str, None] = {}
    seen: set[Path] = set()
    for folder in map(Path, folders):
        if not folder.is_dir() or folder.resolve() in seen:
            continue
        seen.add(folder.resolve())
        for path in sorted(folder.glob("*.toml")):
            try:
                storage = tomllib.loads(path.read_text(encoding="utf-8")).get("storage")
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
                continue
            url = resolve_storage(storage if isinstance(storage, str) else None, path.resolve().parent, path.stem)
            file = storage_file(url)
            if file is None or file.is_file():
                urls[url] = None
    return list(urls)
