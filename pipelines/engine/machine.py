"""The job state machine: every transition of a job and its stage runs, inside one transaction.

Rules that make the guarantees hold:
- every write transaction locks the job row first (:func:`pipelines.store.jobrow.lock_job`), so the transitions
  of one job are serial and a fan-out's join is decided exactly once;
- a stage run changes state only by a conditional update on its status and dispatch
  token, so a duplicated or superseded message is a no-op;
- messages are sent only after commit (:mod:`pipelines.engine.dispatch`).
Each function returns an :class:`Outbox` for the caller to send after committing.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Connection, Table, and_, bindparam, func, or_, select, update
from sqlalchemy.orm import Session

from actors.errors import ErrorInfo, PollLater
from conveyor.errors import ConveyorError
from conveyor.job_shape import ItemCounts, StageOut
from conveyor.statuses import JobStatus, StageStatus
from pipelines.definition import Pipeline, RetryPolicy, Step, get_pipeline
from pipelines.engine import progress, transitions
from pipelines.engine.dispatch import Dispatch, Outbox, queue_run, queued_state
from pipelines.engine.results import finalize_result
from pipelines.store.jobrow import JOBS, JobLike, JobRow, lock_job
from pipelines.store.models import (
    STEP_ROW,
    JobEvent,
    RunStatus,
    StageRun,
    iso,
    utcnow,
)


class EngineError(ConveyorError):
    """Raised when a job cannot make the transition asked of it."""


def pipeline_of(job: JobRow) -> Pipeline:
    pipeline = get_pipeline(job.pipeline)
    if pipeline is None:
        raise EngineError(f"pipeline {job.pipeline!r} is not registered in this process")
    return pipeline


# Table-level statements for the hot path: they skip the ORM's per-object bookkeeping.
RUNS: Table = StageRun.__table__  # type: ignore[assignment]
EVENTS: Table = JobEvent.__table__  # type: ignore[assignment]
_INSERT_EVENT = EVENTS.insert()
_INSERT_RUN = RUNS.insert().returning(RUNS.c.id)
_INSERT_RUNS = RUNS.insert().returning(RUNS.c.id, sort_by_parameter_order=True)
_CLAIM_JOB = (JOBS.update().where(JOBS.c.id == bindparam("job_id"), JOBS.c.status == JobStatus.PENDING.value)
              .values(status=JobStatus.PROCESSING.value, started_at=bindparam("now"), updated_at=bindparam("now")))
_CLAIM_RUN = (
    RUNS.update()
    .where(RUNS.c.id == bindparam("run_id"), RUNS.c.status == RunStatus.QUEUED.value,
           RUNS.c.dispatch_token == bindparam("token"))
    .values(status=RunStatus.PROCESSING.value, attempts=RUNS.c.attempts + 1, lease_until=bindparam("lease_until"),
            updated_at=bindparam("now"), started_at=func.coalesce(RUNS.c.started_at, bindparam("now")))
    .returning(RUNS.c.step, RUNS.c.item, RUNS.c.name, RUNS.c.attempts, RUNS.c.checkpoint, RUNS.c.started_at)
)
_COMPLETE_RUN = (
    RUNS.update()
    .where(RUNS.c.id == bindparam("run_id"), RUNS.c.status == RunStatus.PROCESSING.value,
           RUNS.c.dispatch_token == bindparam("token"))
    .values(status=bindparam("new_status"), output=bindparam("output"), progress=1.0,
            finished_at=bindparam("now"), lease_until=None, error=None, updated_at=bindparam("now"),
            duration=bindparam("duration"))
    .returning(RUNS.c.step, RUNS.c.item, RUNS.c.attempts)
)


def _core(session: Session) -> Connection:
    """The session's connection, for table-level statements: they skip the ORM's autoflush before each."""
    return session.connection()


def record_event(session: Session, outbox: Outbox, job: JobRow, kind: str, **data: Any) -> None:
    job.ensure_inserted()
    _core(session).execute(_INSERT_EVENT, {"job_id": job.id, "kind": kind, "data": data, "created_at": utcnow()})
    outbox.notify(job.id, kind)


def update_summary(job: JobRow, index: int, **changes: Any) -> StageOut:
    """Change the job's summary entry of step ``index``; assigns a new list so the JSON column is saved."""
    stages = [s.copy() for s in job.stages or []]
    stages[index].update(changes)  # type: ignore[typeddict-item]  # the keys are StageOut's
    job.stages = stages
    return stages[index]


def count_item(job: JobRow, index: int, outcome: Literal["completed", "failed"]) -> ItemCounts:
    """Add one ``completed`` or ``failed`` item to step ``index``'s counts; returns the new counts."""
    items = item_counts(job, index).copy()
    items[outcome] += 1
    update_summary(job, index, items=items)
    return items


def item_counts(job: JobRow, index: int) -> ItemCounts:
    """The item counts of step ``index``, a fan-out or parallel step."""
    counts = job.stages[index].get("items")
    assert counts is not None, f"step {index} of {job.pipeline} has no items"
    return counts


def initial_summary(pipeline: Pipeline) -> list[StageOut]:
    """The stage summary of a new job: every step pending."""
    return [
        StageOut(name=step.name, status=StageStatus.PENDING, progress=0.0, attempts=0,
                     items=ItemCounts(total=0, completed=0, failed=0) if step.has_items else None,
                     started_at=None, finished_at=None, error=None)
        for step in pipeline.steps
    ]


# --- starting steps -------------------------------------------------------------------------------------


def _insert_runs(session: Session, job: JobRow, rows: list[dict[str, Any]]) -> list[int]:
    job.ensure_inserted()
    if len(rows) == 1:
        return [_core(session).execute(_INSERT_RUN, rows[0]).scalar_one()]
    keys = set().union(*rows)  # one executemany needs the same columns in every row
    rows = [{key: row.get(key) for key in keys} for row in rows]
    result = _core(session).execute(_INSERT_RUNS, rows)
    return [r.id for r in result]


def _queued_row(job: JobRow, index: int, item: int, name: str, actor: str, payload: Any, policy: RetryPolicy,
                outbox: Outbox, items_total: int | None) -> tuple[dict[str, Any], Any]:
    """A queued run's row, and a callback that adds its message to the outbox once its id is known."""
    state = queued_state(actor)
    # The job's own input is stored once, on the job: a first step's run (not a fan-out's item) reads it there.
    stored = None if _input_is_the_jobs(job, index, item) else payload
    row = {"job_id": job.id, "step": index, "item": item, "name": name, "actor": actor, "input": stored, **state}

    def dispatch(run_id: int) -> None:
        outbox.dispatches.append(Dispatch(actor, payload, job.id, run_id, state["dispatch_token"], None,
                                          policy.time_limit, items_total, index == 0, job.pipeline,
                                          progress.known_size(job.id)))
    return row, dispatch


def start_step(session: Session, job: JobRow, pipeline: Pipeline, index: int, step_input: Any) -> Outbox:
    """Create the runs of step ``index`` and queue the first of them."""
    outbox = Outbox()
    step = pipeline.steps[index]
    if index == 1:  # the first step's output tells the job's size: its messages carry it to the ETA
        progress.remember_size(job.id, progress.input_size(step_input))
    now = utcnow()
    update_summary(job, index, status="processing", started_at=iso(now), finished_at=None, error=None)
    job.step = step.name.replace("_", " ").capitalize()
    if step.kind == "stage":
        row, dispatch = _queued_row(job, index, STEP_ROW, step.name, step.actors[0].actor_name, step_input,
                                    step.policy_for(0), outbox, None)
        dispatch(_insert_runs(session, job, [row])[0])
        return outbox

    if step.kind == "fan_out":
        if not isinstance(step_input, list):
            info = ErrorInfo("invalid_output", f"step {step.name!r} needs a list from the step before it", False)
            return fail_job(session, job, step.name, info)
        items = list(step_input)
    else:
        items = [step_input] * len(step.actors)
    cap = step.concurrency or len(items)
    rows: list[dict[str, Any]] = [{"job_id": job.id, "step": index, "item": STEP_ROW, "name": step.name,
                                   "status": RunStatus.PROCESSING.value, "started_at": now, "updated_at": now}]
    dispatches = []
    for i, value in enumerate(items):
        name = step.branches[i] if step.branches else step.name
        actor = step.actor_for(i).actor_name
        if i < cap:
            row, dispatch = _queued_row(job, index, i, name, actor, value, step.policy_for(i), outbox, len(items))
            dispatches.append(dispatch)
        else:
            row, _ = {"job_id": job.id, "step": index, "item": i, "name": name, "actor": actor, "input": value,
                      "status": RunStatus.WAITING.value, "updated_at": now}, None
            dispatches.append(None)
        rows.append(row)
    ids = _insert_runs(session, job, rows)
    for dispatch, run_id in zip(dispatches, ids[1:], strict=True):
        if dispatch is not None:
            dispatch(run_id)
    update_summary(job, index, items={"total": len(items), "completed": 0, "failed": 0})
    if not items:
        outbox.extend(finish_step(session, job, pipeline, index, []))
    return outbox


def _input_is_the_jobs(job: JobRow, index: int, item: int) -> bool:
    """Whether a run's input is the job's own (first step: its run, or a parallel branch; not a fan-out item)."""
    return index == 0 and (item == STEP_ROW or pipeline_of(job).steps[0].kind == "parallel")


def first_input(job: JobLike) -> Any:
    """The first step's input: the resolved input, or the input itself when nothing needed resolving."""
    return job.resolved_input if job.resolved_input is not None else job.input


def requeue_run(job: JobRow, run: StageRun, policy: RetryPolicy, outbox: Outbox, *, delay: float | None = None,
                ) -> None:
    """Queue a loaded run again (a retry, a wait, a rescue), telling a fan-out item its fan-out's size."""
    counts = (job.stages or [])[run.step].get("items") if run.item != STEP_ROW else None
    payload = first_input(job) if _input_is_the_jobs(job, run.step, run.item) else run.input
    queue_run(run, policy, outbox, payload, delay=delay, items_total=counts["total"] if counts else None,
              pipeline=job.pipeline, job_size=progress.known_size(job.id))


def _queue_waiting_items(session: Session, job: JobRow, step: Step, index: int, outbox: Outbox) -> None:
    """Keep a capped fan-out full: queue waiting items while fewer than the cap are in flight."""
    if not step.concurrency:
        return
    runs = session.scalars(
        select(StageRun).where(StageRun.job_id == job.id, StageRun.step == index, StageRun.item >= 0,
                               StageRun.status.in_([RunStatus.WAITING.value, RunStatus.QUEUED.value,
                                                    RunStatus.PROCESSING.value]))
        .order_by(StageRun.item)
    ).all()
    for position in transitions.items_to_queue([r.status for r in runs], step.concurrency):
        requeue_run(job, runs[position], step.policy_for(runs[position].item), outbox)


# --- running a stage ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClaimedRun:
    """What the message that claimed a run needs to know of it."""

    step: int
    item: int
    name: str
    attempts: int
    checkpoint: dict[str, Any] | None
    started_at: datetime


def claim(connection: Connection, job_id: str, run_id: int, token: str, lease_seconds: float, *,
          first_step: bool) -> ClaimedRun | None:
    """Take a queued run for this message: ``None`` if the message is stale, duplicated or canceled.

    The run's status alone decides: canceling or failing a job cancels its queued runs in the same
    transaction. One conditional statement, so it may run in autocommit; the job row is touched (first,
    keeping the job-then-run lock order) only for the first step, while the job is still pending.
    """
    now = utcnow()
    if first_step:
        connection.execute(_CLAIM_JOB, {"job_id": job_id, "now": now})
    row = connection.execute(_CLAIM_RUN, {"run_id": run_id, "token": token, "now": now,
                                          "lease_until": now + timedelta(seconds=lease_seconds)}).first()
    return ClaimedRun(*row) if row is not None else None


def complete(session: Session, job_id: str, run_id: int, token: str, output: Any,
             started_at: datetime | None = None) -> Outbox:
    """Record a stage's result and move the job on."""
    outbox = Outbox()
    job = lock_job(session, job_id)
    if job is None:
        return outbox
    now = utcnow()
    done = RunStatus.COMPLETED.value if job.status == JobStatus.PROCESSING.value else RunStatus.CANCELED.value
    row = _core(session).execute(_COMPLETE_RUN, {
        "run_id": run_id, "token": token, "new_status": done, "now": now,
        "output": output if done == RunStatus.COMPLETED.value else None,
        "duration": (now - started_at).total_seconds() if started_at else None,
    }).first()
    if row is None or done != RunStatus.COMPLETED.value:
        return outbox
    index, item, attempts = row
    pipeline = pipeline_of(job)
    if item == STEP_ROW:
        return finish_step(session, job, pipeline, index, output, attempts=attempts, run_is_step=True)
    count_item(job, index, "completed")
    return _item_done(session, job, pipeline, pipeline.steps[index], index)


def _item_done(session: Session, job: JobRow, pipeline: Pipeline, step: Step, index: int) -> Outbox:
    """After an item ended: queue the next waiting one, or join the step when every item has ended."""
    outbox = Outbox()
    items = item_counts(job, index)
    if not transitions.items_all_ended(items):
        _queue_waiting_items(session, job, step, index, outbox)
        # Ended items count whole; running items' own progress is added by their progress reports.
        ended = (items["completed"] + items["failed"]) / items["total"]
        progress.update_job_progress(session, job, pipeline, index, outbox, fraction=ended)
        return outbox
    runs = session.execute(
        select(StageRun.status, StageRun.output, StageRun.error)
        .where(StageRun.job_id == job.id, StageRun.step == index, StageRun.item >= 0).order_by(StageRun.item)
    ).all()
    outputs = [output if status == RunStatus.COMPLETED.value else {"error": error} for status, output, error in runs]
    joined: Any = dict(zip(step.branches, outputs, strict=True)) if step.kind == "parallel" else outputs
    outbox.extend(finish_step(session, job, pipeline, index, joined))
    return outbox


def finish_step(session: Session, job: JobRow, pipeline: Pipeline, index: int, output: Any, *,
                attempts: int | None = None, run_is_step: bool = False) -> Outbox:
    """Mark step ``index`` completed with ``output`` and start the next step, or complete the job.

    ``run_is_step``: the caller already recorded the step's own run as completed (a plain stage).
    """
    outbox = Outbox()
    now = utcnow()
    if not run_is_step:
        started = session.scalar(select(StageRun.started_at).where(
            StageRun.job_id == job.id, StageRun.step == index, StageRun.item == STEP_ROW))
        session.execute(
            update(StageRun).where(StageRun.job_id == job.id, StageRun.step == index, StageRun.item == STEP_ROW)
            .values(status=RunStatus.COMPLETED.value, output=output, progress=1.0, finished_at=now, updated_at=now,
                    duration=(now - started).total_seconds() if started else None),
            execution_options={"synchronize_session": False},
        )
    update_summary(job, index, status="completed", progress=100.0, finished_at=iso(now), attempts=attempts or 1)
    record_event(session, outbox, job, "stage", stage=pipeline.steps[index].name, status="completed")
    if index + 1 < len(pipeline.steps):
        progress.update_job_progress(session, job, pipeline, index + 1, outbox, fraction=0.0)
        outbox.extend(start_step(session, job, pipeline, index + 1, output))
        return outbox
    job.result = finalize_result(session, job, output)
    job.progress, job.step = 100.0, "Done"
    _finish_job(session, job, JobStatus.COMPLETED, outbox)
    return outbox


def _finish_job(session: Session, job: JobRow, status: JobStatus, outbox: Outbox) -> None:
    now = utcnow()
    job.status, job.finished_at, job.updated_at = status.value, now, now
    job.eta_seconds, job.eta_at = None, None
    record_event(session, outbox, job, "status", status=status.value)
    from pipelines.engine import hooks

    hooks.job_finished(session, job, outbox)


def fail_job(session: Session, job: JobRow, stage_name: str, info: ErrorInfo) -> Outbox:
    """Fail the job at ``stage_name``; runs not started are canceled, running ones become no-ops.

    The job's ``result`` keeps the outputs of the steps that completed before, by step name.
    """
    outbox = Outbox()
    job.error = {"stage": stage_name, **info.as_dict()}
    job.step = f"Failed at {stage_name}"
    _cancel_open_runs(session, job)
    index = next((i for i, s in enumerate(job.stages or []) if s["name"] == stage_name), None)
    if index is not None:
        update_summary(job, index, status="failed", error=info.as_dict(), finished_at=iso(utcnow()))
    # What the steps before the failure made is kept, by step name (a storyboard whose scenes all failed).
    finished = session.execute(
        select(StageRun.name, StageRun.output)
        .where(StageRun.job_id == job.id, StageRun.item == STEP_ROW, StageRun.status == RunStatus.COMPLETED.value)
        .order_by(StageRun.step)
    ).all()
    job.result = finalize_result(session, job, {name: output for name, output in finished}) if finished else None
    _finish_job(session, job, JobStatus.FAILED, outbox)
    return outbox


def _cancel_open_runs(session: Session, job: JobRow) -> None:
    """Cancel the runs not started, and close fan-out and parallel step rows (they carry no message).

    Running stages stay ``processing`` until they end; then their outcome is discarded.
    """
    session.execute(
        update(StageRun)
        .where(StageRun.job_id == job.id,
               or_(StageRun.status.in_([RunStatus.WAITING.value, RunStatus.QUEUED.value]),
                   and_(StageRun.item == STEP_ROW, StageRun.actor.is_(None),
                        StageRun.status == RunStatus.PROCESSING.value)))
        .values(status=RunStatus.CANCELED.value, updated_at=utcnow())
    )


def _own_run(session: Session, run_id: int, token: str) -> StageRun | None:
    """The run, if this message (``token``) still holds it."""
    run = session.get(StageRun, run_id, populate_existing=True)
    if run is None or run.status != RunStatus.PROCESSING.value or run.dispatch_token != token:
        return None
    return run


def fail(session: Session, job_id: str, run_id: int, token: str, exc: BaseException, info: ErrorInfo | None,
         ) -> Outbox:
    """Handle a stage that raised: poll later, wait out a rate limit, retry, or fail.

    ``info`` is the classified error (None for the control-flow ``PollLater``).
    """
    outbox = Outbox()
    job = lock_job(session, job_id)
    run = _own_run(session, run_id, token)
    if job is None or run is None:
        return outbox
    if job.status != JobStatus.PROCESSING.value:
        run.status, run.finished_at = RunStatus.CANCELED.value, utcnow()
        return outbox
    pipeline = pipeline_of(job)
    step = pipeline.steps[run.step]
    policy = step.policy_for(max(run.item, 0))
    decision = transitions.after_failure(policy, attempts=run.attempts, waited=run.waited,
                                         poll_after=exc.delay if isinstance(exc, PollLater) else None,
                                         info=info, uniform=random.uniform)
    if isinstance(decision, transitions.Wait):
        run.waited += decision.delay
        run.attempts -= 1  # waiting on a provider spends no retry
        requeue_run(job, run, policy, outbox, delay=decision.delay)
        return outbox
    if isinstance(decision, transitions.Retry):
        run.error = decision.info.as_dict()
        requeue_run(job, run, policy, outbox, delay=decision.delay)
        if run.item == STEP_ROW:
            update_summary(job, run.step, attempts=run.attempts)
        record_event(session, outbox, job, "stage", stage=step.name, status="retrying", item=run.item,
                     code=decision.info.code, delay=round(decision.delay, 2))
        return outbox
    return _run_failed(session, job, pipeline, step, run, decision.info)


def _run_failed(session: Session, job: JobRow, pipeline: Pipeline, step: Step, run: StageRun, info: ErrorInfo,
                ) -> Outbox:
    run.status, run.error, run.finished_at, run.lease_until = RunStatus.FAILED.value, info.as_dict(), utcnow(), None
    if run.item == STEP_ROW:
        update_summary(job, run.step, attempts=run.attempts)
        return fail_job(session, job, step.name, info)
    count_item(job, run.step, "failed")
    if not transitions.item_failure_fails_the_step(run.item, step.on_failure):
        job.errors = [*(job.errors or []), {"stage": step.name, "item": run.item, **info.as_dict()}]
        return _item_done(session, job, pipeline, step, run.step)
    # The step fails with this item: its summary says how many tries the item had.
    update_summary(job, run.step, attempts=max(run.attempts, job.stages[run.step].get("attempts") or 0))
    return fail_job(session, job, step.name, info)


def requeue(session: Session, job_id: str, run_id: int, token: str) -> Outbox:
    """Hand a run back unharmed (its worker is shutting down): no retry spent.

    Its lease ends now and the reconciler of another worker queues it at its next pass. Its
    message is not sent from here: while this process shuts down, its consumer and idle worker
    threads still run and would take the message straight back.
    """
    outbox = Outbox()
    job = lock_job(session, job_id)
    run = _own_run(session, run_id, token)
    if job is None or run is None or job.status != JobStatus.PROCESSING.value:
        return outbox
    run.attempts -= 1
    run.lease_until = utcnow()
    return outbox


# --- the job as a whole: cancel, resume, rescue --------------------------------------------------------


def cancel(session: Session, job: JobRow) -> Outbox:
    """Cancel the job: runs not started are canceled; a running stage finds out at its next progress
    report or when it ends (its output is then discarded)."""
    outbox = Outbox()
    _cancel_open_runs(session, job)
    job.stages = transitions.canceled_summary(job.stages or [], iso(utcnow()))
    job.step = "Canceled"
    _finish_job(session, job, JobStatus.CANCELED, outbox)
    return outbox


def resume(session: Session, job: JobRow) -> Outbox:
    """Reopen ``job`` at its first unfinished step; completed runs keep their outputs."""
    pipeline = pipeline_of(job)
    now = utcnow()
    job.status, job.attempt, job.error, job.finished_at, job.updated_at = (
        JobStatus.PROCESSING.value, job.attempt + 1, None, None, now)
    step_rows = {
        r.step: r for r in session.scalars(
            select(StageRun).where(StageRun.job_id == job.id, StageRun.item == STEP_ROW).order_by(StageRun.step))
    }
    index = transitions.resume_point([row.status if (row := step_rows.get(i)) else None
                                      for i in range(len(pipeline.steps))])
    outbox = Outbox()
    job.stages = transitions.reopened_summary(job.stages or [])  # the step resumed is set below
    record_event(session, outbox, job, "status", status=job.status, attempt=job.attempt)
    if index >= len(pipeline.steps):  # every step finished: only the ending was lost
        outbox.extend(finish_step(session, job, pipeline, len(pipeline.steps) - 1,
                                         step_rows[len(pipeline.steps) - 1].output))
        return outbox
    step = pipeline.steps[index]
    row = step_rows.get(index)
    if row is None:
        previous = step_rows[index - 1].output if index else first_input(job)
        outbox.extend(start_step(session, job, pipeline, index, previous))
        return outbox
    update_summary(job, index, status="processing", error=None, finished_at=None)
    job.step = step.name.replace("_", " ").capitalize()
    if not step.has_items:
        row.attempts, row.error, row.waited, row.finished_at = 0, None, 0.0, None
        requeue_run(job, row, step.policy_for(0), outbox)
        return outbox
    row.status, row.finished_at = RunStatus.PROCESSING.value, None
    items = list(session.scalars(
        select(StageRun).where(StageRun.job_id == job.id, StageRun.step == index, StageRun.item >= 0)
        .order_by(StageRun.item)))
    reopened = [r for r in items if r.status in (RunStatus.FAILED.value, RunStatus.CANCELED.value)]
    for run in reopened:
        run.status, run.attempts, run.error, run.waited, run.finished_at = RunStatus.WAITING.value, 0, None, 0.0, None
    job.errors = [e for e in job.errors or [] if e.get("stage") != step.name]
    completed = sum(1 for r in items if r.status == RunStatus.COMPLETED.value)
    update_summary(job, index, items={"total": len(items), "completed": completed, "failed": 0})
    for position in transitions.items_to_queue([r.status for r in items], step.concurrency):
        requeue_run(job, items[position], step.policy_for(items[position].item), outbox)
    if completed == len(items):
        outbox.extend(_item_done(session, job, pipeline, step, index))
    return outbox


def rescue(session: Session, job: JobRow, run: StageRun, *, expired_lease: bool) -> Outbox | None:
    """Queue again a run whose worker or message was lost (the reconciler's transition).

    ``expired_lease``: the run was ``processing`` and its lease lapsed (its worker stopped); else it
    was ``queued`` and its message is gone. None when the run is no longer in that state.
    """
    expected = RunStatus.PROCESSING.value if expired_lease else RunStatus.QUEUED.value
    if run.status != expected or (expired_lease and run.lease_until and run.lease_until >= utcnow()):
        return None
    if job.status not in (JobStatus.PROCESSING.value, JobStatus.PENDING.value):
        run.status = RunStatus.CANCELED.value
        return None
    pipeline = pipeline_of(job)
    step = pipeline.steps[run.step]
    policy = step.policy_for(max(run.item, 0))
    decision = transitions.after_loss(policy, attempts=run.attempts, expired_lease=expired_lease)
    if isinstance(decision, transitions.Fail):
        return _run_failed(session, job, pipeline, step, run, decision.info)
    outbox = Outbox()
    requeue_run(job, run, policy, outbox)
    return outbox
