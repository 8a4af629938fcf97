"""Fake trials for the tests, built from a :class:`TrialRecord` (what a study stores, named in one place)."""
from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import FrozenTrial

from fusionnas.trial_record import TrialRecord


def frozen_trial(record: TrialRecord, **kwargs: Any) -> FrozenTrial:
    """``optuna.trial.create_trial(**kwargs)`` that stores ``record``, as a search would have written it."""
    return optuna.trial.create_trial(**kwargs, **{"user_attrs": record.attributes()})
