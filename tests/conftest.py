"""Fast unit tests: Dramatiq's StubBroker, SQLite in a temporary folder, worker threads in-process.

Integration tests against real Redis and PostgreSQL live in tests/integration (and tests/reliability);
their conftests set up their own services and broker for their own tests, so one pytest process can
run everything.
"""

from __future__ import annotations

import os
import tempfile

_VAR = tempfile.mkdtemp(prefix="conveyor-tests-")
os.environ.setdefault("CONVEYOR_BROKER", "stub")
os.environ.setdefault("CONVEYOR_VAR_DIR", _VAR)
os.environ.setdefault("CONVEYOR_PROGRESS_INTERVAL", "0")
os.environ.setdefault("CONVEYOR_LEASE_SECONDS", "10")
os.environ.setdefault("CONVEYOR_RECONCILE_INTERVAL", "0.5")


import pytest  # noqa: E402

from tests.support.fixtures import db, db_template, stub_broker, stub_worker  # noqa: E402,F401 - fixtures


@pytest.fixture(scope="session", autouse=True)
def conveyor_process():
    """The composition root, run once for this pytest process: the stub broker here, a folder's real
    services where its conftest set them in the environment."""
    from conveyor.config import configure
    from pipelines.worker import setup

    configure()
    return setup()
