"""The Dramatiq middleware that runs stage messages under the engine's rules.

Before a stage message runs, it claims the stage run in the database (only the message
holding the run's current dispatch token may); a stale or duplicated message is skipped.
While the stage runs, a lease is renewed by a heartbeat thread, progress and checkpoints
are written through the stage context, and afterwards the result or failure moves the
job on. Messages without engine options (e.g. webhooks) pass through untouched.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware, SkipMessage
from sqlalchemy import update
from sqlalchemy.exc import DBAPIError, OperationalError

from actors.context import StageContext, set_stage_context
from actors.errors import JobCanceled, PollLater, classify
from actors.stage import StageFailure
from conveyor.config import settings
from conveyor.logs import bind_stage, clear_stage
from pipelines import engine, progress
from pipelines.db import autocommit, transaction
from pipelines.dispatch import (
    FIRST_STEP_OPTION,
    ITEMS_OPTION,
    JOB_OPTION,
    RUN_OPTION,
    TOKEN_OPTION,
    Outbox,
    send,
)
from pipelines.groupcommit import GroupCommit
from pipelines.jobrow import lock_job
from pipelines.models import JobStatus, RunStatus, StageRun, utcnow

logger = logging.getLogger(__name__)

#: s; how long the end of a finished stage is retried while the database cannot be reached (a
#: restart, a fail-over) before it is left to its lease lapsing, which would run the stage again.
RECORD_RETRY_SECONDS = 8.0


class _QuietExpectedWarnings(logging.Filter):
    """Drop two Dramatiq warnings that are normal here: a stage's return value is not discarded (this
    middleware stores it), and a skipped message is a stale or duplicate stage message doing nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return "Results middleware" not in text and not text.endswith("was skipped.")


logging.getLogger("dramatiq.worker.WorkerThread").addFilter(_QuietExpectedWarnings())


@dataclass
class ActiveRun:
    job_id: str
    run_id: int
    token: str
    started_at: Any = None


class RunReporter:
    """Writes one running stage's progress (throttled) and checkpoints to the job store."""

    def __init__(self, active: ActiveRun, *, interval: float) -> None:
        self.active = active
        self.interval = interval
        self._last_write = 0.0

    def report_progress(self, fraction: float, message: str | None) -> None:
        now = time.monotonic()
        if now - self._last_write < self.interval and fraction < 1.0:
            return
        self._last_write = now
        outbox = Outbox()
        with transaction() as session:
            job = lock_job(session, self.active.job_id)
            if job is None or job.status == JobStatus.CANCELED.value:
                raise JobCanceled()
            run = session.get(StageRun, self.active.run_id)
            if run is None or run.dispatch_token != self.active.token or run.status != RunStatus.PROCESSING.value:
                return
            run.progress = max(run.progress or 0.0, fraction)
            if message:
                run.message = job.step = message[:300]
            session.flush()
            progress.update_job_progress(session, job, engine.pipeline_of(job), run.step, outbox)
        send(outbox)

    def save_checkpoint(self, values: dict[str, Any]) -> None:
        with transaction() as session:
            session.execute(
                update(StageRun)
                .where(StageRun.id == self.active.run_id, StageRun.dispatch_token == self.active.token,
                       StageRun.status == RunStatus.PROCESSING.value)
                .values(checkpoint=values, updated_at=utcnow())
            )


class LeaseKeeper(threading.Thread):
    """Renews the leases of the stages running in this process, in one statement per beat."""

    def __init__(self, runs: dict[str, ActiveRun], lease_seconds: float) -> None:
        super().__init__(name="conveyor-lease-keeper", daemon=True)
        self.runs = runs
        self.lease_seconds = lease_seconds
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.lease_seconds / 3):
            ids = [r.run_id for r in list(self.runs.values())]
            if not ids:
                continue
            try:
                with transaction() as session:
                    session.execute(
                        update(StageRun)
                        .where(StageRun.id.in_(ids), StageRun.status == RunStatus.PROCESSING.value)
                        .values(lease_until=utcnow() + timedelta(seconds=self.lease_seconds))
                    )
            except Exception:
                logger.warning("Could not renew stage leases; retrying", exc_info=True)


class StageTracking(Middleware):
    """Claims, tracks and finishes stage runs. Importing :mod:`pipelines` installs it."""

    def __init__(self, *, lease_seconds: float | None = None, reconcile: bool = True) -> None:
        self.lease_seconds = lease_seconds or settings().lease_seconds
        self.reconcile = reconcile
        self.active: dict[str, ActiveRun] = {}
        self.ends = GroupCommit()
        self._threads: list[Any] = []
        self.stopping = False

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.stopping = False
        keeper = LeaseKeeper(self.active, self.lease_seconds)
        keeper.start()
        self._threads.append(keeper)
        if self.reconcile:
            from pipelines.reconciler import ReconcilerThread

            reconciler = ReconcilerThread(settings().reconcile_interval_seconds)
            reconciler.start()
            self._threads.append(reconciler)

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.stopping = True
        for thread in self._threads:
            thread.stopped.set()
        self._threads.clear()

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        run_id = message.options.get(RUN_OPTION)
        if run_id is None:
            return
        if self.stopping:
            # A stage started now would get no shutdown notification and hold this process until
            # the shutdown timeout. Leave its run queued: the reconciler re-sends the message.
            logger.info("Worker shutting down: leaving stage message %s to another worker", message.message_id)
            raise SkipMessage("the worker is shutting down")
        active = ActiveRun(message.options[JOB_OPTION], run_id, message.options[TOKEN_OPTION])
        with autocommit() as connection:
            run = engine.claim(connection, active.job_id, run_id, active.token, self.lease_seconds,
                               first_step=bool(message.options.get(FIRST_STEP_OPTION)))
        if run is None:
            logger.debug("Skipping stale, duplicated or canceled stage message %s", message.message_id)
            raise SkipMessage("stale, duplicated or canceled stage message")
        active.started_at = run.started_at
        ctx = StageContext(
            job_id=active.job_id, stage=run.name, item=None if run.item < 0 else run.item,
            items_total=message.options.get(ITEMS_OPTION), attempt=run.attempts, checkpoint=run.checkpoint,
            reporter=RunReporter(active, interval=settings().progress_interval_seconds), managed=True,
        )
        self.active[message.message_id] = active
        set_stage_context(ctx)
        bind_stage(active.job_id, run.name, ctx.item)

    def after_process_message(
        self, broker: dramatiq.Broker, message: MessageProxy, *, result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        active = self.active.pop(message.message_id, None)
        if active is None:
            return
        set_stage_context(None)
        clear_stage()
        if isinstance(result, StageFailure):
            exception, result = result.exception, None
        try:
            outbox = self._record_end(active, result, exception)
        except Exception:
            # The run stays 'processing'; its lease lapses and the reconciler runs it again.
            logger.exception("Could not record the end of stage run %s", active.run_id)
            return
        send(outbox)

    def _record_end(self, active: ActiveRun, result: Any, exception: BaseException | None) -> Outbox:
        """Record the stage's end (with other ends of its job that come now, see ``groupcommit``),
        retrying for a while when the database cannot be reached; returns what is left to send.

        A retry after a commit whose acknowledgement was lost finds the run no longer held by this
        message and records nothing; the reconciler then sends the next stage's message.
        """
        def record(session: Any) -> Outbox:
            return self._finish(session, active, result, exception)

        deadline = time.monotonic() + RECORD_RETRY_SECONDS
        delay = 0.1
        while True:
            try:
                if self.ends.record(active.job_id, record):
                    return Outbox()  # recorded, and sent by the batch
                with transaction() as session:
                    return record(session)
            except DBAPIError as error:
                unreachable = isinstance(error, OperationalError) or error.connection_invalidated
                if not unreachable or time.monotonic() + delay > deadline:
                    raise
                logger.warning("Could not reach the database to record the end of stage run %s (%s); "
                               "retrying in %.1f s", active.run_id, type(error.orig).__name__, delay)
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    @staticmethod
    def _finish(session: Any, active: ActiveRun, result: Any, exception: BaseException | None) -> Outbox:
        if exception is None:
            return engine.complete(session, active.job_id, active.run_id, active.token, result, active.started_at)
        if type(exception).__name__ == "Shutdown":
            return engine.requeue(session, active.job_id, active.run_id, active.token)
        info = None if isinstance(exception, PollLater) else classify(exception)
        if info is not None:
            logger.warning("Stage run %s failed: %s (%s)", active.run_id, info.message, info.code)
        return engine.fail(session, active.job_id, active.run_id, active.token, exception, info)
