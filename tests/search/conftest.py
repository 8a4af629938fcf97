"""A new study name on each storage kind that many workers share."""
from __future__ import annotations

import uuid

import optuna
import pytest


@pytest.fixture(params=["sqlite", "journal", "postgresql"])
def storage_url(request, tmp_path):
    """(URL, study name) for a new study on one storage kind; a PostgreSQL study is deleted afterwards.

    PostgreSQL comes from the ``postgres_url`` fixture: skipped locally without a
    server, failed under CI=true.
    """
    name = f"shared-{uuid.uuid4().hex[:8]}"
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
        yield url, name
        if name in [s.study_name for s in optuna.get_all_study_summaries(url, include_best_trial=False)]:
            optuna.delete_study(study_name=name, storage=url)
        return
    yield (f"sqlite:///{tmp_path / 'study.db'}" if request.param == "sqlite"
           else f"journal:///{tmp_path / 'study.log'}"), name
