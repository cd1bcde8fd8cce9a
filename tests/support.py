"""Fixtures and helpers shared by the unit and the integration tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import dramatiq
import pytest

from conveyor.config import configure, load_settings
from conveyor.statuses import TERMINAL

IN_CI = os.environ.get("CI") == "true"


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


@pytest.fixture
def db(tmp_path: Path) -> Iterator[str]:
    """A fresh SQLite job store, configured as the process's database."""
    from pipelines import db as database
    from pipelines.models import Base

    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    configure(load_settings({**os.environ, "DATABASE_URL": url, "STORAGE_URL": f"file://{tmp_path / 'files'}"}))
    Base.metadata.create_all(database.get_engine())
    _stamp_newest(url)  # the models are the newest schema: say so, as `conveyor db upgrade` would
    yield url
    database.dispose_all()
    configure()


def _stamp_newest(url: str) -> None:
    from alembic import command

    from pipelines.migrate import alembic_config

    command.stamp(alembic_config(url), "head")


@pytest.fixture
def stub_broker() -> Iterator[dramatiq.Broker]:
    from pipelines.worker import ensure_setup

    broker = ensure_setup()
    broker.flush_all()
    yield broker
    broker.flush_all()


@pytest.fixture
def stub_worker(stub_broker: dramatiq.Broker, db: str) -> Iterator[dramatiq.Worker]:
    worker = dramatiq.Worker(stub_broker, worker_timeout=100, worker_threads=4)
    worker.start()
    yield worker
    worker.stop()
    # Each Worker adds its own middleware to the broker; drop it so the next test's worker starts clean.
    stub_broker.middleware[:] = [m for m in stub_broker.middleware if type(m).__name__ != "_WorkerMiddleware"]


def wait_for_job(job_id: str, *, timeout: float = 60.0, status: tuple[str, ...] = TERMINAL) -> dict[str, Any]:
    """Poll the job until its status is one of ``status``; fail the test after ``timeout`` s."""
    from pipelines.jobs import get_job

    deadline = time.monotonic() + timeout
    job = get_job(job_id)
    while job["status"] not in status:
        if time.monotonic() > deadline:
            pytest.fail(f"job {job_id} still {job['status']} after {timeout}s: step={job['step']!r}")
        time.sleep(0.02)
        job = get_job(job_id)
    return job


def unique(name: str) -> str:
    return f"{name}_{uuid.uuid4().hex[:8]}"


#: Jobs whose hand-offs cover every kind of step: chain, capped fan-out, parallel, tolerated failure.
HANDOFF_CASES = [
    ("noop_chain", {}),
    ("demo", {"items": 5}),  # a capped fan-out (4 at once), a stage, parallel branches, a stage
    ("demo", {"items": 3, "fail_items": [1]}),  # a tolerated failure inside the fan-out
    ("noop_fanout", {"items": 12}),
]

#: Fields that differ between two runs of the same job whatever path records them.
VOLATILE = {"id", "created_at", "started_at", "finished_at", "updated_at", "eta_seconds"}


def comparable_job(job: dict[str, Any]) -> dict[str, Any]:
    """A finished job without what differs between two runs of it (ids, times, the ETA)."""
    stages = [{k: v for k, v in s.items() if k not in ("started_at", "finished_at")} for s in job["stages"]]
    errors = sorted((e["stage"], e["item"], e["code"]) for e in job["errors"] or [])
    return {**{k: v for k, v in job.items() if k not in VOLATILE | {"stages", "errors"}},
            "stages": stages, "errors": errors}


def stop_process_group(process: subprocess.Popen, timeout: float = 40.0) -> None:
    """SIGTERM a process started in a session of its own (and all it started); SIGKILL after ``timeout`` s."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def wait_until_healthy(base: str, process: subprocess.Popen, log: Path, timeout: float = 60.0) -> dict[str, Any]:
    """Poll ``base``/healthz until it answers 200 (its JSON is returned); fail with the log's tail if
    ``process`` exits or ``timeout`` s pass first."""
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        try:
            health = httpx.get(f"{base}/healthz", timeout=2)
            if health.status_code == 200:
                return health.json()
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline and process.poll() is None, log.read_text()[-3000:]
        time.sleep(0.5)
