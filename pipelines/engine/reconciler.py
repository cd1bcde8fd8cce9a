"""The reconciler: finds stage runs whose message or worker was lost, and sends them again.

- A ``processing`` run whose lease lapsed lost its worker (killed, frozen, cut off): it is
  queued again under a new token, so the broker's own late redelivery of the old message
  becomes a no-op. It counts as an attempt; past the step's retries the run fails.
- A ``queued`` run past its due time whose message the broker no longer holds (Redis
  flushed or restarted, an enqueue that failed after commit) is sent again.
It runs as a thread in every worker, in the ``clock`` process, and as ``conveyor reconcile``.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select

from actors.broker.build import current_broker
from pipelines.engine import machine as engine
from pipelines.engine.dispatch import Outbox, send
from pipelines.store.db import transaction
from pipelines.store.jobrow import lock_job
from pipelines.store.models import RunStatus, StageRun, utcnow

logger = logging.getLogger(__name__)

#: s a queued run may be overdue before its message is looked for.
QUEUED_GRACE = 5.0
#: s a queued run may be overdue before it is re-sent when the broker cannot say whether its message lives.
BLIND_GRACE = 60.0
#: Most runs one pass handles of each kind.
BATCH = 200


@dataclass
class ReconcileReport:
    expired_leases: int = 0
    lost_messages: int = 0

    def __str__(self) -> str:
        return f"{self.expired_leases} stage(s) with lapsed leases, {self.lost_messages} lost message(s) re-sent"


def _message_is_live(run: StageRun) -> bool | None:
    check = getattr(current_broker(), "message_is_live", None)
    if check is None or not run.queue or not run.dispatch_token:
        return None
    return bool(check(run.queue, run.dispatch_token))


def reconcile_once() -> ReconcileReport:
    """One pass over the job store; safe to run in many processes at once."""
    report = ReconcileReport()
    now = utcnow()
    with transaction() as session:
        expired = session.execute(
            select(StageRun.id, StageRun.job_id, StageRun.dispatch_token)
            .where(StageRun.status == RunStatus.PROCESSING.value, StageRun.lease_until < now).limit(BATCH)
        ).all()
        overdue = list(session.scalars(
            select(StageRun)
            .where(StageRun.status == RunStatus.QUEUED.value,
                   StageRun.due_at < now - timedelta(seconds=QUEUED_GRACE)).limit(BATCH)
        ))
    for run_id, job_id, token in expired:
        if _rescue(job_id, run_id, token, expired_lease=True):
            report.expired_leases += 1
    for run in overdue:
        live = _message_is_live(run)
        blind_deadline = now - timedelta(seconds=BLIND_GRACE)
        if live or (live is None and run.due_at and run.due_at > blind_deadline):
            continue
        if _rescue(run.job_id, run.id, run.dispatch_token, expired_lease=False):
            report.lost_messages += 1
    if report.expired_leases or report.lost_messages:
        logger.warning("Reconciler: %s", report)
    return report


def _rescue(job_id: str, run_id: int, token: str | None, *, expired_lease: bool) -> bool:
    """Queue the run again if it is still in the state we found it in."""
    outbox = Outbox()
    with transaction() as session:
        job = lock_job(session, job_id)
        run = session.get(StageRun, run_id, populate_existing=True)
        if job is None or run is None or run.dispatch_token != token:
            return False
        planned = engine.rescue(session, job, run, expired_lease=expired_lease)
        if planned is None:
            return False
        outbox = planned
    send(outbox)
    return True


class ReconcilerThread(threading.Thread):
    """Runs :func:`reconcile_once` every ``interval`` seconds until stopped."""

    def __init__(self, interval: float) -> None:
        super().__init__(name="conveyor-reconciler", daemon=True)
        self.interval = interval
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                reconcile_once()
            except Exception:
                logger.warning("Reconciler pass failed; trying again", exc_info=True)
