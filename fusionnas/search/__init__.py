"""Search: study files, the Optuna objective, storages and the study runner."""
from __future__ import annotations

from fusionnas.search.config import (
    METRICS,
    SAMPLERS,
    ZERO_COST_PROXIES,
    Budget,
    Constraints,
    DatasetConfig,
    Objective,
    SamplerConfig,
    SpaceRestriction,
    StudyConfig,
    StudyConfigError,
    StudyConfigProblem,
)
from fusionnas.search._study_file import load_study_config, parse_study_config
from fusionnas.search.context import StudyContext
from fusionnas.search.estimators import ESTIMATORS, Estimator, register_estimator
from fusionnas.search.objective import SearchObjective, TrialFailed
from fusionnas.search.progress import SearchProgress, count_trials, describe_trials, format_progress
from fusionnas.search.artifacts import artifacts_dir
from fusionnas.search.opening import StudyMismatchError, StudyNotFoundError, open_study, study_data
from fusionnas.search.runner import SearchFailed, SearchInterrupted, run_study
from fusionnas.search.storage import StorageError, StorageOptions, open_storage
from fusionnas.search.studies import StoredStudy, default_storages, delete_study, find_study, list_studies
from fusionnas.search.tpe import SnapshotTPESampler

__all__ = [
    "METRICS",
    "SAMPLERS",
    "ZERO_COST_PROXIES",
    "Budget",
    "Constraints",
    "DatasetConfig",
    "Objective",
    "SamplerConfig",
    "SpaceRestriction",
    "StudyConfig",
    "StudyConfigError",
    "StudyConfigProblem",
    "load_study_config",
    "parse_study_config",
    "SearchObjective",
    "StudyContext",
    "Estimator",
    "ESTIMATORS",
    "register_estimator",
    "TrialFailed",
    "SearchInterrupted",
    "SearchFailed",
    "SearchProgress",
    "StudyMismatchError",
    "StudyNotFoundError",
    "artifacts_dir",
    "count_trials",
    "describe_trials",
    "format_progress",
    "open_study",
    "run_study",
    "study_data",
    "StorageError",
    "StorageOptions",
    "open_storage",
    "StoredStudy",
    "default_storages",
    "delete_study",
    "find_study",
    "list_studies",
    "SnapshotTPESampler",
]
