"""Stage ends written behind the worker threads: many jobs' ends in one transaction and one round trip.

A worker thread that waits for the database after every stage spends most of its time waiting, and
a process's threads each pay a commit. Here a finished stage's end goes to this per-process writer and
the thread takes its next message at once (its message is acknowledged before the end is committed).
The writer takes every end that is waiting, applies their plans in one call (:mod:`pipelines.engine.pgstore`),
which is one synchronous commit, and only then sends every next message, doorbell and notice in one
Redis round trip.

Why acknowledging first keeps the guarantees: until the writer commits, the run is still
``processing`` under its lease, which the lease keeper renews while the end waits here. A process
killed in between looks like one killed mid-stage: the lease lapses, the reconciler queues the run
again, the stage runs again, and nothing is recorded twice (every write is conditional on the
run's dispatch token). The queue is bounded, so a slow database slows the worker threads instead of
growing memory; a stopping worker drains it before it exits.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

from psycopg import OperationalError

from pipelines.engine import pgstore
from pipelines.engine.dispatch import Outbox, send
from pipelines.engine.handoff import Applied, StageEnd, outbox_for, plan_end
from pipelines.store.db import UNREACHABLE_PATIENCE, transaction, while_unreachable

logger = logging.getLogger(__name__)

#: Ends waiting at most; a worker thread finishing a stage beyond it waits for room (back-pressure).
CAPACITY = 512
#: Most ends written in one call.
MAX_BATCH = 256

_STOP = object()


class EndWriter:
    """Per process: records stage ends in batches, behind the worker threads."""

    def __init__(self, *, capacity: int = CAPACITY) -> None:
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=capacity)
        self._pending: dict[int, StageEnd] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="conveyor-end-writer", daemon=True)
            self._thread.start()

    def submit(self, end: StageEnd) -> None:
        """Queue ``end``; blocks while the writer is full."""
        with self._lock:
            self._pending[end.run_id] = end
        self.queue.put(end)

    def pending_run_ids(self) -> list[int]:
        """Runs whose end waits here: their leases must be kept."""
        with self._lock:
            return list(self._pending)

    def stop(self, timeout: float = UNREACHABLE_PATIENCE + 5) -> None:
        """Write every end queued so far, then stop."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return
        self.queue.put(_STOP)
        thread.join(timeout)
        self._thread = None

    def _run(self) -> None:
        while True:
            batch = [self.queue.get()]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            stopping = any(item is _STOP for item in batch)
            ends = [item for item in batch if item is not _STOP]
            if ends:
                try:
                    self.write(ends)
                except Exception:
                    logger.exception("Could not record %d stage end(s); their leases lapse and the stages run "
                                     "again", len(ends))
                finally:
                    with self._lock:
                        for end in ends:
                            self._pending.pop(end.run_id, None)
            if stopping:
                pgstore.close()
                return

    def write(self, ends: list[StageEnd]) -> None:
        """Record ``ends``: their plans in one call, the rest the general way; then send what follows."""
        from pipelines.engine.progress import cached_rates

        durations = _durations({end.pipeline for end in ends})
        planned: list[tuple[StageEnd, dict[str, Any]]] = []
        general: list[StageEnd] = []
        for end in sorted(ends, key=lambda e: e.job_id):  # one lock order for every writer
            plan = plan_end(end, durations.get(end.pipeline), cached_rates(end.pipeline))
            if plan is None:
                general.append(end)
            else:
                planned.append((end, plan))
        outbox = Outbox()
        if planned:
            try:
                applied = while_unreachable(lambda: pgstore.apply_ends([plan for _, plan in planned]),
                                            what="record stage ends")
            except OperationalError:
                raise
            except Exception:
                # One bad end must not cost the others: each is recorded on its own.
                logger.exception("Could not record %d stage ends together; recording each alone", len(planned))
                applied = [_alone(plan) for _, plan in planned]
            for (end, _), result in zip(planned, applied, strict=True):
                if result.outcome == "slow":
                    general.append(end)
                else:
                    outbox.extend(outbox_for(end, result))
        send(outbox)
        for end in general:
            try:
                record_general(end)
            except Exception:  # this one's lease lapses and its stage runs again; the others go on
                logger.exception("Could not record the end of stage run %s", end.run_id)


def _alone(plan: dict[str, Any]) -> Applied:
    try:
        return pgstore.apply_ends([plan])[0]
    except Exception:
        logger.exception("Could not apply the plan of stage run %s; recording it the general way", plan["run"])
        return Applied("slow", [])


def record_general(end: StageEnd) -> None:
    """Record one end through the general state machine (its own transaction), then send what follows."""
    from pipelines.engine import machine as engine

    with transaction() as session:
        outbox = engine.complete(session, end.job_id, end.run_id, end.token, end.output, end.started_at)
    send(outbox)


def _durations(pipelines: set[str]) -> dict[str, dict[int, float]]:
    """Past step durations of each pipeline (cached for a minute by :mod:`pipelines.engine.progress`)."""
    from pipelines.engine import progress

    result: dict[str, dict[int, float]] = {}
    missing = []
    for name in pipelines:
        cached = progress.cached_durations(name)
        if cached is None or progress.cached_rates(name) is None:
            missing.append(name)
        else:
            result[name] = cached
    if missing:
        try:
            with transaction() as session:
                for name in missing:
                    result[name] = progress.past_durations(session, name)
                    progress.past_rates(session, name)  # cached for plan_end's sized ETA
        except Exception:  # an ETA is not worth an end: plan without history
            logger.debug("Could not read past step durations", exc_info=True)
    return result
