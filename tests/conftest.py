"""Shared test settings: small thread count, deterministic seeds, a PostgreSQL server."""
import os

import pytest
import torch

import _postgres

# Under pytest-xdist (`make test` runs one test process per core) each process keeps to one
# thread: OpenMP threads of two processes sharing the cores wait for each other.
THREADS = 1 if os.environ.get("PYTEST_XDIST_WORKER") else 2


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    torch.set_num_threads(THREADS)
    yield


@pytest.fixture(scope="session")
def postgres_url():
    """SQLAlchemy URL of a throwaway PostgreSQL database (see tests/_postgres.py).

    Uses FUSIONNAS_POSTGRES_URL when set, else starts a cluster on 127.0.0.1 for
    the session. Without PostgreSQL the test is skipped, or fails under CI=true.
    """
    with _postgres.postgres_url() as url:
        yield url


@pytest.fixture(params=["native", "reference"])
def kernel_path(request):
    """Runs a test twice: with the native kernels, and with every operator in its reference form.

    The native run is skipped where the kernels were not built (the reference run covers that case).
    """
    from fusionnas.kernels import available, reference_forms, unavailable_reason

    if request.param == "native":
        if not available():
            pytest.skip(f"native kernels: {unavailable_reason()}")
        yield "native"
    else:
        with reference_forms():
            yield "reference"
