"""This run's real Redis and PostgreSQL: the folders that need them (tests/integration, tests/reliability), and
the single tests elsewhere that need one service.

A folder's conftest sets them up for its own tests only (a package-scoped fixture), so the whole
suite can run in one pytest process. Each run gets its own PostgreSQL database (created and
migrated here, dropped at the end) and its own Redis database number, flushed first. Locally an
unreachable service skips the folder's tests; under CI=true it fails them.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

IN_CI = os.environ.get("CI") == "true"

POSTGRES_ADMIN_URL = os.environ.get("CONVEYOR_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
#: One Redis database number per suite, so suites that run at once never flush each other's keys.
INTEGRATION_REDIS_URL = os.environ.get("CONVEYOR_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
RELIABILITY_REDIS_URL = os.environ.get("CONVEYOR_TEST_RELIABILITY_REDIS_URL", "redis://127.0.0.1:6379/11")
SECURITY_REDIS_URL = os.environ.get("CONVEYOR_TEST_SECURITY_REDIS_URL", "redis://127.0.0.1:6379/13")
LIMITS_REDIS_URL = os.environ.get("CONVEYOR_TEST_LIMITS_REDIS_URL", "redis://127.0.0.1:6379/15")
#: A provider key the reliability workers hold; it must never surface in an error.
CANARY_KEY = "luma-canary-" + uuid.uuid4().hex


def require_service(url: str, name: str) -> None:
    """Skip when a service is unreachable locally; fail under CI=true, where every service must run."""
    parsed = urlparse(url)
    try:
        socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 0), timeout=2).close()
    except OSError as exc:
        message = f"{name} is not reachable at {parsed.hostname}:{parsed.port} ({exc})"
        if IN_CI:
            pytest.fail(message + "; CI must start it (see .ci/run)")
        pytest.skip(message)


def unreachable(redis_url: str, postgres_url: str = POSTGRES_ADMIN_URL) -> str | None:
    """Which service does not answer (with its error), or None when both do."""
    import psycopg
    import redis

    try:
        redis.Redis.from_url(redis_url, socket_connect_timeout=2).ping()
    except Exception as exc:
        return f"Redis at {redis_url}: {exc}"
    try:
        psycopg.connect(postgres_url, connect_timeout=2).close()
    except Exception as exc:
        return f"PostgreSQL at {postgres_url}: {exc}"
    return None


class RunServices:
    """The Redis database ``redis_url`` and a new PostgreSQL database named ``<prefix>_<random>``.

    Raises:
      pytest.UsageError: at once under CI=true when a service is unreachable, so the run fails
        instead of skipping.
    """

    def __init__(self, redis_url: str, database_prefix: str) -> None:
        self.redis_url = redis_url
        self.problem = unreachable(redis_url)
        if self.problem and IN_CI:
            raise pytest.UsageError(f"CI=true but a service is down: {self.problem}; .ci/run must start it")
        self.database_name = f"{database_prefix}_{uuid.uuid4().hex[:10]}"
        self.database_url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + self.database_name

    def environment(self) -> dict[str, str]:
        """The variables this process and its workers need (lease and reconciler pace: production's defaults)."""
        return {
            "CONVEYOR_BROKER": "redis",
            "REDIS_URL": self.redis_url,
            "DATABASE_URL": self.database_url,
            "CONVEYOR_PROGRESS_INTERVAL": "0.2",
            "CONVEYOR_LEASE_SECONDS": "10",
            "CONVEYOR_RECONCILE_INTERVAL": "2",
        }

    def skip_if_unreachable(self, items: list[pytest.Item], folder: Path) -> None:
        """Mark the folder's collected tests skipped when a service is unreachable (only outside CI)."""
        if self.problem:
            skip = pytest.mark.skip(reason=f"service unreachable: {self.problem}")
            for item in items:
                if item.path.is_relative_to(folder):
                    item.add_marker(skip)

    def session(self, extra_environment: dict[str, str] | None = None) -> Iterator[None]:
        """For one folder's tests: this process's environment (which its worker processes inherit) and
        settings point at the services, the Redis database is flushed, the PostgreSQL one created and
        migrated, and the composition root builds a broker on them. Afterwards the database is dropped
        and the environment, settings and broker the other folders use come back."""
        if self.problem:
            yield
            return
        import dramatiq
        import psycopg
        import redis

        from conveyor.config import configure
        from pipelines.store.db import dispose_all
        from pipelines.store.migrate import upgrade
        from pipelines.worker import setup

        saved_environment, previous_broker = dict(os.environ), dramatiq.broker.global_broker
        os.environ.update({**self.environment(), **(extra_environment or {})})
        redis.Redis.from_url(self.redis_url).flushdb()
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{self.database_name}"')
        configure()
        upgrade()
        broker = setup()
        try:
            yield
        finally:
            broker.close()
            dispose_all()
            with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{self.database_name}" WITH (FORCE)')
            os.environ.clear()
            os.environ.update(saved_environment)
            configure()
            if previous_broker is not None:
                setup(previous_broker)
