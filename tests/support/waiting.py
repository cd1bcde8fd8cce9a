"""Waiting for what a test expects to happen, instead of sleeping and hoping it has.

The StubBroker counts each message sent to a queue until a worker acknowledges it, after running
it and sending what it queued; a message taken off a queue but not yet run is still counted. So
once every queue is back to the count it had before, every message sent since (and every message
those sent) has been dealt with.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import dramatiq
import pytest


def wait_until(condition: Callable[[], Any], *, timeout: float = 20.0, what: str = "the condition",
               interval: float = 0.01) -> Any:
    """Poll ``condition`` until it returns something truthy, and return that; fail the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def unacknowledged(broker: dramatiq.Broker) -> dict[str, int]:
    """Per queue of a StubBroker (delay queues included): the messages sent and not yet acknowledged."""
    return {name: queue.unfinished_tasks for name, queue in broker.queues.items()}


def wait_until_settled(broker: dramatiq.Broker, before: dict[str, int], *, timeout: float = 20.0) -> None:
    """Return once every message sent since ``before`` (an :func:`unacknowledged` count) was
    acknowledged, retries and delayed messages included; fail the test after ``timeout`` s."""
    def settled() -> bool:
        return all(count <= before.get(name, 0) for name, count in unacknowledged(broker).items())

    wait_until(settled, timeout=timeout, what=f"the messages sent since {before} settling")
