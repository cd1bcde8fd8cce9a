"""Operational figures: job counts, queue depths, workers seen recently, and health checks.

Workers announce themselves: :class:`WorkerPresence` (installed on the broker by importing
:mod:`pipelines`) records each worker process in a Redis sorted set every few seconds, or in
this process's memory when the broker has no Redis (unit tests).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware
from sqlalchemy import func, select

from actors.broker.build import current_broker, redis_client
from conveyor.statuses import JobStatus
from pipelines.store.db import get_engine, transaction
from pipelines.store.models import Job

logger = logging.getLogger(__name__)

#: s between a worker's announcements.
PRESENCE_INTERVAL = 5.0
#: s after its last announcement that a worker still counts as seen.
PRESENCE_WINDOW = 60.0
PRESENCE_KEY = "conveyor:workers"

_local_workers: dict[str, float] = {}


def _worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def announce(worker_id: str | None = None, *, broker: dramatiq.Broker | None = None) -> None:
    """Record that a worker process is alive now."""
    worker_id = worker_id or _worker_id()
    client = redis_client(broker or current_broker())
    now = time.time()
    if client is None:
        _local_workers[worker_id] = now
        return
    pipe = client.pipeline(transaction=False)
    pipe.zadd(PRESENCE_KEY, {worker_id: now})
    pipe.zremrangebyscore(PRESENCE_KEY, 0, now - 10 * PRESENCE_WINDOW)
    pipe.execute()


def withdraw(worker_id: str | None = None, *, broker: dramatiq.Broker | None = None) -> None:
    worker_id = worker_id or _worker_id()
    client = redis_client(broker or current_broker())
    if client is None:
        _local_workers.pop(worker_id, None)
    else:
        client.zrem(PRESENCE_KEY, worker_id)


class _Announcer(threading.Thread):
    def __init__(self, broker: dramatiq.Broker) -> None:
        super().__init__(name="conveyor-presence", daemon=True)
        self.broker = broker
        self.stopped = threading.Event()

    def run(self) -> None:
        while True:
            try:
                announce(broker=self.broker)
            except Exception:  # a missed announcement only makes the worker look idle for a while
                logger.debug("Could not announce this worker", exc_info=True)
            if self.stopped.wait(PRESENCE_INTERVAL):
                return


class WorkerPresence(Middleware):
    """Announces the worker process while it runs, so ``/api/stats`` can count workers."""

    def __init__(self) -> None:
        self._announcers: list[_Announcer] = []

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        announcer = _Announcer(broker)
        announcer.start()
        self._announcers.append(announcer)

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        for announcer in self._announcers:
            announcer.stopped.set()
        self._announcers.clear()
        try:
            withdraw(broker=broker)
        except Exception:
            logger.debug("Could not withdraw this worker", exc_info=True)


def workers_seen(*, window: float = PRESENCE_WINDOW) -> list[str]:
    """Ids (``host:pid``) of worker processes that announced themselves in the last ``window`` s."""
    client = redis_client(current_broker())
    since = time.time() - window
    if client is None:
        return sorted(w for w, at in _local_workers.items() if at >= since)
    members: list[Any] = client.zrangebyscore(PRESENCE_KEY, since, "+inf")
    return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)


def queue_depths() -> dict[str, dict[str, int]]:
    """Per queue: messages ready to run, delayed (retries, poll-later), and taken by a worker."""
    broker = current_broker()
    names = sorted(q for q in broker.get_declared_queues() if not q.endswith((".DQ", ".XQ")))
    client = redis_client(broker)
    depths: dict[str, dict[str, int]] = {}
    if client is None:
        queues = getattr(broker, "queues", {})
        for name in names:
            ready = queues[name].qsize() if name in queues else 0
            delayed = queues[f"{name}.DQ"].qsize() if f"{name}.DQ" in queues else 0
            depths[name] = {"ready": ready, "delayed": delayed, "in_progress": None}  # type: ignore[dict-item]
        return depths
    namespace = getattr(broker, "namespace", "dramatiq")
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.llen(f"{namespace}:{name}")
        pipe.hlen(f"{namespace}:{name}.msgs")
        pipe.hlen(f"{namespace}:{name}.DQ.msgs")
    answers = pipe.execute()
    for i, name in enumerate(names):
        ready, stored, delayed = answers[3 * i : 3 * i + 3]
        depths[name] = {"ready": ready, "delayed": delayed, "in_progress": max(0, stored - ready)}
    return depths


def job_counts(*, user_id: str | None) -> dict[str, Any]:
    """The user's jobs counted by status and by pipeline and status."""
    query = select(Job.pipeline, Job.status, func.count()).group_by(Job.pipeline, Job.status)
    if user_id is not None:
        query = query.where(Job.user_id == user_id)
    by_status: dict[str, int] = {s.value: 0 for s in JobStatus}
    by_pipeline: dict[str, dict[str, int]] = {}
    with transaction() as session:
        for pipeline, status, count in session.execute(query):
            by_status[status] = by_status.get(status, 0) + count
            by_pipeline.setdefault(pipeline, {})[status] = count
    return {"total": sum(by_status.values()), "by_status": by_status, "by_pipeline": by_pipeline}


def stats(*, user_id: str | None) -> dict[str, Any]:
    """Everything ``GET /api/stats`` answers."""
    try:
        queues: dict[str, Any] | None = queue_depths()
        workers: list[str] | None = workers_seen()
    except Exception as exc:
        logger.warning("Could not read queue figures from the broker: %s", exc)
        queues, workers = None, None
    return {
        "jobs": job_counts(user_id=user_id),
        "queues": queues,
        "workers": {"seen": len(workers) if workers is not None else None, "ids": workers,
                    "window_seconds": PRESENCE_WINDOW},
    }


def check_database() -> str:
    """``"ok"``, or what is wrong with the database."""
    try:
        # A raw connection skips the engine's SQLite "BEGIN IMMEDIATE", which would queue behind writers.
        connection = get_engine().raw_connection()
        try:
            cursor = connection.cursor()
            cursor.execute("SELECT 1")
            cursor.close()
        finally:
            connection.close()
        return "ok"
    except Exception as exc:
        return f"down: {type(exc).__name__}"


def check_broker() -> str:
    """``"ok"``, or what is wrong with the broker."""
    client = redis_client(current_broker())
    if client is None:
        return "ok"  # an in-process broker is up while this process is
    try:
        client.ping()
        return "ok"
    except Exception as exc:
        return f"down: {type(exc).__name__}"


def health() -> dict[str, str]:
    """``{"status", "database", "broker"}``; status is ``ok`` only when both are."""
    report = {"database": check_database(), "broker": check_broker()}
    down = [name for name, state in report.items() if state != "ok"]
    return {"status": "ok" if not down else "unavailable", **report}
