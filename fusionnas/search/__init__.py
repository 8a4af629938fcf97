"""Search: study files, and (later) the Optuna objective, runner and workers."""
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
    StudyConfig,
    StudyConfigError,
    StudyConfigProblem,
    load_study_config,
    parse_study_config,
)

__all__ = [
    "METRICS",
    "SAMPLERS",
    "ZERO_COST_PROXIES",
    "Budget",
    "Constraints",
    "DatasetConfig",
    "Objective",
    "SamplerConfig",
    "StudyConfig",
    "StudyConfigError",
    "StudyConfigProblem",
    "load_study_config",
    "parse_study_config",
]
