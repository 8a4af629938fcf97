"""Shared test settings: small thread count, deterministic seeds, a PostgreSQL server."""
import pytest
import torch

import _postgres


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    torch.set_num_threads(2)
    yield


@pytest.fixture(scope="session")
def postgres_url():
    """SQLAlchemy URL of a throwaway PostgreSQL database (see tests/_postgres.py).

    Uses FUSIONNAS_POSTGRES_URL when set, else starts a cluster on 127.0.0.1 for
    the session. Without PostgreSQL the test is skipped, or fails under CI=true.
    """
    with _postgres.postgres_url() as url:
        yield url
