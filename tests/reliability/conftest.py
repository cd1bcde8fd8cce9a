"""Reliability tests: faults injected into real worker processes, real Redis and real PostgreSQL.

Like tests/integration, this folder sets its own environment, services and broker for its own tests
(a package-scoped fixture; ``make test-reliability`` runs it alone). Each run gets its own PostgreSQL
database (created, migrated, dropped at the end) and Redis database number 11 (flushed first);
tests that stop or restart Redis start their own ``redis-server`` on a free port. Locally an
unreachable service skips the tests; under CI=true it fails them.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.services import CANARY_KEY, RELIABILITY_REDIS_URL, RunServices

SERVICES = RunServices(RELIABILITY_REDIS_URL, "conveyor_rel")
DATABASE_URL = SERVICES.database_url
SCRATCH = Path(tempfile.mkdtemp(prefix="conveyor-reliability-"))

# Worker processes inherit this environment (set while this folder's tests run).
ENVIRONMENT = {
    "CONVEYOR_VAR_DIR": str(SCRATCH / "var"),
    "STORAGE_URL": f"file://{SCRATCH / 'files'}",
    "CONVEYOR_PIPELINES": "tests.reliability.faulty",
    "CONVEYOR_TEST_EXECUTIONS": str(SCRATCH / "executions.jsonl"),
    "LUMA_API_KEY": CANARY_KEY,
}


def pytest_collection_modifyitems(config, items):
    SERVICES.skip_if_unreachable(items, Path(__file__).parent)


@pytest.fixture(scope="package", autouse=True)
def reliability_services() -> Iterator[None]:
    """This folder's services: its own database (migrated) and Redis db, its environment, a broker on them."""
    yield from SERVICES.session(ENVIRONMENT)


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., object]]:
    """A factory of booted ``dramatiq pipelines.worker:setup`` processes logging to ``tmp_path``; all stopped after the test."""
    from tests.support.workers import WorkerProcess

    started: list[WorkerProcess] = []

    def start(name: str = "worker", *, threads: int = 2, env: dict[str, str] | None = None,
              args: tuple[str, ...] = (), wait: bool = True) -> WorkerProcess:
        worker = WorkerProcess(threads=threads, extra_env=env, log_path=tmp_path / f"{name}.log",
                               extra_args=args)
        started.append(worker)
        if wait:
            worker.wait_ready()
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    """A folder shared with the worker processes (gate and flag files)."""
    return tmp_path


@pytest.fixture
def provider(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., object]]:
    """A factory of running Luma emulators (the paid provider stages call), all stopped after the test.

    ``provider(done_after_polls=2, done_after_seconds=None)``: when a generation is done. Workers
    started afterwards find the emulator at their ``LUMA_BASE_URL``.
    """
    from tests.emulator import start_emulator
    from tests.emulator.luma import luma_blueprint
    from tests.emulator.server import JobStore

    started = []

    def start(*, done_after_polls: int | None = 2, done_after_seconds: float | None = None):
        blueprint = luma_blueprint(JobStore(done_after_polls=done_after_polls, done_after_seconds=done_after_seconds))
        emulator = start_emulator(blueprint)
        started.append(emulator)
        monkeypatch.setenv("LUMA_BASE_URL", emulator.base_url)
        return emulator

    yield start
    for emulator in started:
        emulator.stop()


#: Figures the tests measured, printed at the end of the run.
MEASURED: list[str] = []


@pytest.fixture
def measure() -> Callable[[str, float], None]:
    """``measure(what, seconds)`` keeps a timing for the run's summary."""

    def keep(what: str, seconds: float) -> None:
        MEASURED.append(f"{what}: {seconds:.2f} s")

    return keep


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if MEASURED:
        terminalreporter.section("reliability: measured")
        for line in MEASURED:
            terminalreporter.write_line(line)


from tests.reliability.fault_injection import private_redis  # noqa: E402,F401 - a fixture
