"""The unit tests' process-wide fixtures: a fresh SQLite job store, the StubBroker and a worker on it.

The job store's schema is built once per pytest process, in a template file each test copies: a
copy costs a file write where ``create_all`` and an Alembic stamp cost tens of milliseconds.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import dramatiq
import pytest

from conveyor.config import configure, load_settings

#: ms a stub worker's threads wait on an empty queue before looking again; also what stopping one
#: waits for each thread, so short (Dramatiq's default is a second).
WORKER_POLL_MS = 10
#: s a paused consumer waits before it consumes again once resumed (Dramatiq's default is 3).
CONSUMER_RESTART_S = 0.01


def _use_database(url: str, files: Path) -> None:
    configure(load_settings({**os.environ, "DATABASE_URL": url, "STORAGE_URL": f"file://{files}"}))


@pytest.fixture(scope="session")
def db_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file holding the newest schema, stamped as `conveyor db upgrade` would stamp it."""
    from alembic import command

    from pipelines.store import db as database
    from pipelines.store.migrate import alembic_config
    from pipelines.store.models import Base

    folder = tmp_path_factory.mktemp("template")
    path = folder / "jobs.db"
    url = f"sqlite:///{path}"
    _use_database(url, folder / "files")
    Base.metadata.create_all(database.get_engine())
    command.stamp(alembic_config(url), "head")
    database.dispose_all()  # the last connection closed: the write-ahead log is folded into the file
    configure()
    return path


@pytest.fixture
def db(tmp_path: Path, db_template: Path) -> Iterator[str]:
    """A fresh SQLite job store, configured as the process's database."""
    from pipelines.store import db as database

    path = tmp_path / "jobs.db"
    shutil.copyfile(db_template, path)
    url = f"sqlite:///{path}"
    _use_database(url, tmp_path / "files")
    yield url
    database.dispose_all()
    configure()


@pytest.fixture
def stub_broker() -> Iterator[dramatiq.Broker]:
    from pipelines.worker import ensure_setup

    broker = ensure_setup()
    broker.flush_all()
    yield broker
    broker.flush_all()


@pytest.fixture
def stub_worker(stub_broker: dramatiq.Broker, db: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[dramatiq.Worker]:
    monkeypatch.setattr(dramatiq.worker, "CONSUMER_RESTART_DELAY_SECS", CONSUMER_RESTART_S)
    worker = dramatiq.Worker(stub_broker, worker_timeout=WORKER_POLL_MS, worker_threads=4)
    worker.start()
    yield worker
    worker.stop()
    # Each Worker adds its own middleware to the broker; drop it so the next test's worker starts clean.
    stub_broker.middleware[:] = [m for m in stub_broker.middleware if type(m).__name__ != "_WorkerMiddleware"]
