"""Integration tests: Dramatiq's Redis broker on a real Redis, the job store on a real PostgreSQL.

Each run gets its own PostgreSQL database (created here, dropped at the end) and its own Redis
database number, flushed first. Locally, an unreachable service skips these tests; under
CI=true it fails them. Run this folder in its own pytest process (``make test-integration``).
"""

from __future__ import annotations

import os

import pytest

from tests.services import RunServices, require_own_process

require_own_process("tests/integration", "test-integration")
REDIS_URL = os.environ.get("CONVEYOR_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
SERVICES = RunServices(REDIS_URL, "conveyor_it")
DATABASE_URL = SERVICES.database_url

os.environ.update(SERVICES.environment())


def pytest_collection_modifyitems(config, items):
    SERVICES.skip_if_unreachable(items)


@pytest.fixture(scope="session", autouse=True)
def integration_services():
    """Create this run's database and schema (through the migrations), flush this run's Redis db."""
    yield from SERVICES.session()
