"""Fixtures of the security tests: the web tests' app, client and users, and observers of the network.

These run in the unit-test process (StubBroker, SQLite, in-process worker threads); the one test
that needs a real Redis (the canary key) runs its worker and API in a process of its own.
"""

from __future__ import annotations

from collections.abc import Iterator

import dramatiq
import pytest

from tests.support.network import connects, dns, listener  # noqa: F401 - fixtures
from tests.support.waiting import unacknowledged, wait_until_settled
from tests.support.web import app, auth, client, other_user, user  # noqa: F401 - fixtures


@pytest.fixture
def stub_worker(stub_worker: dramatiq.Worker, stub_broker: dramatiq.Broker) -> Iterator[dramatiq.Worker]:
    """The shared worker fixture, which lets the worker finish every message it took before it stops.

    A message a worker holds when it stops stays counted as unfinished by the process-wide
    StubBroker, and later tests that wait for an idle queue would wait forever.
    """
    before = unacknowledged(stub_broker)
    yield stub_worker
    wait_until_settled(stub_broker, before, timeout=30)
