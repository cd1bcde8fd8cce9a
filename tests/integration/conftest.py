"""Integration tests: Dramatiq's Redis broker on a real Redis, the job store on a real PostgreSQL.

Each run gets its own PostgreSQL database (created here, dropped at the end) and its own Redis
database number, flushed first. Locally, an unreachable service skips these tests; under
CI=true it fails them. Run this folder in its own pytest process (``make test-integration``).
"""

from __future__ import annotations

import os
import sys
import uuid

import pytest

from tests.support import IN_CI

REDIS_URL = os.environ.get("CONVEYOR_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
POSTGRES_ADMIN_URL = os.environ.get("CONVEYOR_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")

if "actors.broker" in sys.modules and os.environ.get("CONVEYOR_BROKER") == "stub":
    raise pytest.UsageError("run tests/integration in its own pytest process: make test-integration")


def _reachable() -> str | None:
    import psycopg
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except Exception as exc:
        return f"Redis at {REDIS_URL}: {exc}"
    try:
        psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=2).close()
    except Exception as exc:
        return f"PostgreSQL at {POSTGRES_ADMIN_URL}: {exc}"
    return None


_problem = _reachable()
if _problem and IN_CI:
    raise pytest.UsageError(f"CI=true but a service is down: {_problem}; .ci/run must start it")
DATABASE_NAME = f"conveyor_it_{uuid.uuid4().hex[:10]}"
DATABASE_URL = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + DATABASE_NAME

os.environ.update({
    "CONVEYOR_BROKER": "redis",
    "REDIS_URL": REDIS_URL,
    "DATABASE_URL": DATABASE_URL,
    "CONVEYOR_PROGRESS_INTERVAL": "0.2",
    "CONVEYOR_LEASE_SECONDS": "10",
    "CONVEYOR_RECONCILE_INTERVAL": "2",
})


def pytest_collection_modifyitems(config, items):
    if _problem:
        skip = pytest.mark.skip(reason=f"service unreachable: {_problem}")
        for item in items:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def integration_services():
    """Create this run's database and schema (through the migrations), flush this run's Redis db."""
    if _problem:
        yield
        return
    import psycopg
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
    from conveyor.config import configure
    from pipelines.schema import upgrade

    configure()
    upgrade()
    yield
    from pipelines.db import dispose_all

    dispose_all()
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{DATABASE_NAME}" WITH (FORCE)')
