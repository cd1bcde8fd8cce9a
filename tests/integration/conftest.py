"""Integration tests: Dramatiq's Redis broker on a real Redis, the job store on a real PostgreSQL.

Each run gets its own PostgreSQL database (created here, dropped at the end) and its own Redis
database number, flushed first. Locally, an unreachable service skips these tests; under
CI=true it fails them. ``make test-integration`` runs this folder alone.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.services import INTEGRATION_REDIS_URL, RunServices

SERVICES = RunServices(INTEGRATION_REDIS_URL, "conveyor_it")
DATABASE_URL = SERVICES.database_url


def pytest_collection_modifyitems(config, items):
    SERVICES.skip_if_unreachable(items, Path(__file__).parent)


@pytest.fixture(scope="package", autouse=True)
def integration_services():
    """This folder's services: its own database (migrated) and Redis db, and a broker on them."""
    yield from SERVICES.session()
