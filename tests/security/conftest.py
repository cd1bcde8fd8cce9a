"""Fixtures of the security tests: the web tests' app, client and users, and observers of the network.

These run in the unit-test process (StubBroker, SQLite, in-process worker threads); the one test
that needs a real Redis (the canary key) runs its worker and API in a process of its own.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import dramatiq
import pytest

from tests.security.network import connects, dns, listener  # noqa: F401 - fixtures
from tests.web.conftest import app, auth, client, other_user, user  # noqa: F401 - fixtures


def unfinished(broker: dramatiq.Broker) -> dict[str, int]:
    return {name: queue.unfinished_tasks for name, queue in broker.queues.items()}  # type: ignore[attr-defined]


@pytest.fixture
def stub_worker(stub_worker: dramatiq.Worker, stub_broker: dramatiq.Broker) -> Iterator[dramatiq.Worker]:
    """The shared worker fixture, which lets the worker finish every message it took before it stops.

    A message a worker holds when it stops stays counted as unfinished by the process-wide
    StubBroker, and later tests that wait for an idle queue would wait forever.
    """
    before = unfinished(stub_broker)
    yield stub_worker
    deadline = time.monotonic() + 30
    while any(count > before.get(name, 0) for name, count in unfinished(stub_broker).items()):
        if time.monotonic() > deadline:
            pytest.fail(f"messages still in flight when the test ended: {unfinished(stub_broker)}")
        time.sleep(0.02)
