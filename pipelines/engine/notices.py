"""Job notices for live progress: Redis pub/sub when the broker has Redis, else in-process.

A notice only says "this job changed"; it is not stored (the audit rows are
:class:`pipelines.store.models.JobEvent`). Workers publish ``{"event": kind, "job_id": id}`` after each committed transition; the
web's event streams subscribe per job (:mod:`pipelines.services.streams`) and read the job itself (one
query) on each notice.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from actors.broker.build import current_broker, redis_client

logger = logging.getLogger(__name__)

_local_subscribers: dict[str, list[queue.Queue[dict]]] = {}
_lock = threading.Lock()


def channel(job_id: str) -> str:
    return f"conveyor:job:{job_id}"


def publish(job_id: str, kind: str) -> None:
    """Tell subscribers of ``job_id`` that it changed (``progress``, ``stage`` or ``status``)."""
    publish_many({job_id: kind})


def add_publishes(pipe: redis.client.Pipeline, notices: dict[str, str]) -> None:
    """Add the publishing of ``{job_id: kind}`` notices to a Redis pipeline the caller executes."""
    for job_id, kind in notices.items():
        pipe.publish(channel(job_id), json.dumps({"event": kind, "job_id": job_id}))


def publish_many(notices: dict[str, str]) -> None:
    """Publish ``{job_id: kind}`` notices, in one round trip to Redis."""
    client = redis_client(current_broker())
    if client is not None:
        try:
            pipe = client.pipeline(transaction=False)
            add_publishes(pipe, notices)
            pipe.execute()
        except Exception:  # a lost notice only delays a live view; polling still answers
            logger.warning("Could not publish %d job notice(s)", len(notices))
        return
    for job_id, kind in notices.items():
        with _lock:
            subscribers = list(_local_subscribers.get(job_id, ()))
        for subscriber in subscribers:
            subscriber.put({"event": kind, "job_id": job_id})


def inbox_notices(inbox: queue.Queue[dict], timeout: float) -> Iterator[dict | None]:
    """Notices from ``inbox`` as they come, and None after each ``timeout`` s of silence."""
    while True:
        try:
            yield inbox.get(timeout=timeout)
        except queue.Empty:
            yield None


@contextmanager
def subscribe_local(job_id: str, *, timeout: float = 15.0) -> Iterator[Iterator[dict | None]]:
    """Notices for ``job_id`` published in this process (brokers without Redis: the unit tests' StubBroker).

    With Redis, event streams subscribe through :func:`pipelines.services.streams.subscribe`.
    """
    inbox: queue.Queue[dict] = queue.Queue()
    with _lock:
        _local_subscribers.setdefault(job_id, []).append(inbox)
    try:
        yield inbox_notices(inbox, timeout)
    finally:
        with _lock:
            _local_subscribers[job_id].remove(inbox)
            if not _local_subscribers[job_id]:
                del _local_subscribers[job_id]
