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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware, Shutdown, SkipMessage
from sqlalchemy import select, update

from actors.broker.doorbell import DoorbellRedisBroker
from actors.context import StageContext, set_stage_context
from actors.errors import JobCanceled, PollLater, classify
from actors.stage import StageFailure
from conveyor.config import settings
from conveyor.logs import bind_stage, clear_stage
from conveyor.statuses import JobStatus
from pipelines.engine import machine as engine
from pipelines.engine import pgstore, progress, sqlitestore
from pipelines.engine.dispatch import (
    FIRST_STEP_OPTION,
    ITEMS_OPTION,
    JOB_OPTION,
    PIPELINE_OPTION,
    RUN_OPTION,
    SIZE_OPTION,
    TOKEN_OPTION,
    Outbox,
    send,
)
from pipelines.engine.groupcommit import GroupCommit
from pipelines.engine.handoff import StageEnd, outbox_for, plan_end
from pipelines.engine.writer import EndWriter
from pipelines.store.db import autocommit, transaction, while_unreachable
from pipelines.store.jobrow import lock_job, write_and_forget
from pipelines.store.models import RunStatus, StageRun, utcnow

logger = logging.getLogger(__name__)


class _QuietExpectedWarnings(logging.Filter):
    """Drop two Dramatiq warnings that are normal here: a stage's return value is not discarded (this
    middleware stores it), and a skipped message is a stale or duplicate stage message doing nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return "Results middleware" not in text and not text.endswith("was skipped.")


def quiet_expected_warnings() -> None:
    """Install the filter above on Dramatiq's worker-thread logger (once)."""
    worker_log = logging.getLogger("dramatiq.worker.WorkerThread")
    if not any(isinstance(f, _QuietExpectedWarnings) for f in worker_log.filters):
        worker_log.addFilter(_QuietExpectedWarnings())


@dataclass
class ActiveRun:
    job_id: str
    run_id: int
    token: str
    started_at: Any = None
    step: int = 0
    item: int = -1
    pipeline: str = ""
    items_total: int | None = None
    job_size: float | None = None

    def end(self, output: Any) -> StageEnd:
        return StageEnd(self.job_id, self.run_id, self.token, self.pipeline, self.step, self.item, output,
                        self.started_at, self.items_total, self.job_size)


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

    def warn(self, code: str, message: str) -> None:
        """Add ``{code, message, stage}`` to the job's warnings now, once (a retried attempt repeats it)."""
        with transaction() as session:
            job = lock_job(session, self.active.job_id)
            run = session.get(StageRun, self.active.run_id)
            if job is None or run is None or run.dispatch_token != self.active.token:
                return
            warning = {"code": code, "message": message, "stage": run.name}
            if warning not in (job.warnings or []):
                job.warnings = [*(job.warnings or []), warning]


class LeaseKeeper(threading.Thread):
    """Renews the leases of the stages running in this process, in one statement per beat."""

    def __init__(self, held: Callable[[], list[int]], lease_seconds: float) -> None:
        super().__init__(name="conveyor-lease-keeper", daemon=True)
        self.held = held
        self.lease_seconds = lease_seconds
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.lease_seconds / 3):
            ids = self.held()
            if not ids:
                continue
            try:
                with transaction() as session:
                    # Rows locked right now are being ended (or reported on): skip them rather than wait,
                    # since waiting on them in another order than the writer's would deadlock.
                    held = (select(StageRun.id)
                            .where(StageRun.id.in_(ids), StageRun.status == RunStatus.PROCESSING.value)
                            .with_for_update(skip_locked=True))
                    session.execute(
                        update(StageRun).where(StageRun.id.in_(held))
                        .values(lease_until=utcnow() + timedelta(seconds=self.lease_seconds))
                    )
            except Exception:
                logger.warning("Could not renew stage leases; retrying", exc_info=True)


class StageTracking(Middleware):
    """Claims, tracks and finishes stage runs. ``pipelines.worker.setup`` installs it.

    On PostgreSQL the hot path is batched: the runs of the messages a consumer fetches are claimed
    together at fetch (:meth:`claim_fetched`), and a stage's end goes to the process's
    :class:`~pipelines.engine.writer.EndWriter` while the thread moves on. Elsewhere (SQLite) each message
    claims its run and each end is recorded before its message is acknowledged.
    """

    def __init__(self, *, lease_seconds: float | None = None, reconcile: bool = True) -> None:
        self.lease_seconds = lease_seconds or settings().lease_seconds
        self.reconcile = reconcile
        self.active: dict[str, ActiveRun] = {}
        self.ends = GroupCommit()
        self.writer: EndWriter | None = None
        #: message id -> (run id, token, claimed row or None if stale): runs claimed at fetch, not yet started
        self.prefetched: dict[str, tuple[int, str, tuple | None]] = {}
        self._keeper: LeaseKeeper | None = None
        self._reconciler: Any = None
        self.stopping = False

    def held_run_ids(self) -> list[int]:
        """Runs whose leases this process keeps: running, ended but not yet written, claimed at fetch."""
        ids = [r.run_id for r in list(self.active.values())]
        ids += [run_id for run_id, _, row in list(self.prefetched.values()) if row is not None]
        if self.writer is not None:
            ids += self.writer.pending_run_ids()
        return ids

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.stopping = False
        if pgstore.enabled():
            self.writer = EndWriter()
            self.writer.start()
            if isinstance(broker, DoorbellRedisBroker):
                broker.on_fetch, broker.on_requeue = self.claim_fetched, self.release_fetched
        self._keeper = LeaseKeeper(self.held_run_ids, self.lease_seconds)
        self._keeper.start()
        if self.reconcile:
            from pipelines.engine.reconciler import ReconcilerThread

            self._reconciler = ReconcilerThread(settings().reconcile_interval_seconds)
            self._reconciler.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.stopping = True
        if self._reconciler is not None:
            self._reconciler.stopped.set()
            self._reconciler = None

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        # Every worker thread has let go: write the ends still waiting, then stop keeping leases.
        if self.writer is not None:
            self.writer.stop()
            self.writer = None
        if isinstance(broker, DoorbellRedisBroker) and broker.on_fetch == self.claim_fetched:
            broker.on_fetch = broker.on_requeue = None
        if self._keeper is not None:
            self._keeper.stopped.set()
            self._keeper = None

    def claim_fetched(self, messages: list[dramatiq.Message]) -> None:
        """Claim the runs of the stage messages one fetch brought, in one statement (consumer thread)."""
        stage_messages = [m for m in messages if m.options.get(RUN_OPTION) is not None]
        if not stage_messages:
            return
        claims = [{"job": m.options[JOB_OPTION], "run": m.options[RUN_OPTION], "token": m.options[TOKEN_OPTION],
                   "first": bool(m.options.get(FIRST_STEP_OPTION))} for m in stage_messages]
        try:
            rows = pgstore.claim_many(claims, self.lease_seconds)
        except Exception:  # each message then claims its run when it starts
            logger.warning("Could not claim %d fetched stage message(s) together", len(claims), exc_info=True)
            return
        for m in stage_messages:
            run_id = m.options[RUN_OPTION]
            held = self.prefetched.get(m.message_id)
            if held is None or held[2] is None:  # a redelivered copy must not undo its twin's claim
                self.prefetched[m.message_id] = (run_id, m.options[TOKEN_OPTION], rows.get(run_id))

    def release_fetched(self, messages: list[dramatiq.Message]) -> None:
        """Hand back the claims of fetched messages that go back to the broker unstarted."""
        fetched = [self.prefetched.pop(m.message_id, None) for m in messages]
        self._release([(f[0], f[1]) for f in fetched if f is not None and f[2] is not None])

    @staticmethod
    def _release(runs: list[tuple[int, str]]) -> None:
        if runs:
            try:
                pgstore.release(runs)
            except Exception:  # their leases lapse and the reconciler queues them again
                logger.warning("Could not release %d claimed stage run(s)", len(runs), exc_info=True)

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        run_id = message.options.get(RUN_OPTION)
        if run_id is None:
            return
        fetched = self.prefetched.pop(message.message_id, None)
        if self.stopping:
            # A stage started now would get no shutdown notification and hold this process until
            # the shutdown timeout. Leave its run queued: the reconciler re-sends the message.
            if fetched is not None and fetched[2] is not None:
                self._release([(fetched[0], fetched[1])])
            logger.info("Worker shutting down: leaving stage message %s to another worker", message.message_id)
            raise SkipMessage("the worker is shutting down")
        active = ActiveRun(message.options[JOB_OPTION], run_id, message.options[TOKEN_OPTION],
                           pipeline=message.options.get(PIPELINE_OPTION) or "",
                           items_total=message.options.get(ITEMS_OPTION),
                           job_size=message.options.get(SIZE_OPTION))
        if fetched is not None:
            run = engine.ClaimedRun(*fetched[2]) if fetched[2] is not None else None
        else:
            with autocommit() as connection:
                run = engine.claim(connection, active.job_id, run_id, active.token, self.lease_seconds,
                                   first_step=bool(message.options.get(FIRST_STEP_OPTION)))
        if run is None:
            logger.debug("Skipping stale, duplicated or canceled stage message %s", message.message_id)
            raise SkipMessage("stale, duplicated or canceled stage message")
        active.started_at, active.step, active.item = run.started_at, run.step, run.item
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
        if exception is None and self.writer is not None:
            self.writer.submit(active.end(result))
            return
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

        def attempt() -> Outbox:
            if self.ends.record(active.job_id, record):
                return Outbox()  # recorded, and sent by the batch
            with transaction() as session:
                return record(session)

        return while_unreachable(attempt, what=f"record the end of stage run {active.run_id}")

    @staticmethod
    def _finish(session: Any, active: ActiveRun, result: Any, exception: BaseException | None) -> Outbox:
        if exception is None:
            if session.get_bind().dialect.name == "sqlite":  # the end's plan, applied in this transaction
                end = active.end(result)
                plan = plan_end(end, progress.past_durations(session, end.pipeline),
                                progress.past_rates(session, end.pipeline)) if end.pipeline else plan_end(end)
                # Other ends of this job recorded in this transaction the general way must be written first.
                write_and_forget(session, end.job_id)
                applied = sqlitestore.apply_ends(session.connection(), [plan])[0] if plan else None
                if applied is not None and applied.outcome != "slow":
                    return outbox_for(end, applied)
            return engine.complete(session, active.job_id, active.run_id, active.token, result, active.started_at)
        if isinstance(exception, Shutdown):
            return engine.requeue(session, active.job_id, active.run_id, active.token)
        info = None if isinstance(exception, PollLater) else classify(exception)
        if isinstance(exception, JobCanceled):
            logger.info("Stage run %s stopped: its job was canceled", active.run_id)
        elif info is not None:
            logger.warning("Stage run %s failed: %s (%s)", active.run_id, info.message, info.code)
        return engine.fail(session, active.job_id, active.run_id, active.token, exception, info)
