"""The job state machine: every transition of a job and its stage runs, inside one transaction.

Rules that make the guarantees hold:
- every write transaction locks the job row first (:func:`lock_job`), so the transitions
  of one job are serial and a fan-out's join is decided exactly once;
- a stage run changes state only by a conditional update on its status and dispatch
  token, so a duplicated or superseded message is a no-op;
- messages are sent only after commit (:mod:`pipelines.dispatch`).
Each function returns an :class:`Outbox` for the caller to send after committing.
"""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from actors.errors import ErrorInfo, PollLater
from pipelines import progress
from pipelines.definition import Pipeline, RetryPolicy, Step, get_pipeline
from pipelines.dispatch import Outbox, queue_run
from pipelines.models import (
    STEP_ROW,
    TERMINAL_RUN,
    Job,
    JobEvent,
    JobStatus,
    RunStatus,
    StageRun,
    utcnow,
)
from pipelines.results import finalize_result


class EngineError(Exception):
    """Raised when a job cannot make the transition asked of it."""


def lock_job(session: Session, job_id: str) -> Job | None:
    """Load the job row and lock it until the transaction ends (a no-op lock on SQLite)."""
    return session.scalars(select(Job).where(Job.id == job_id).with_for_update()).one_or_none()


def pipeline_of(job: Job) -> Pipeline:
    pipeline = get_pipeline(job.pipeline)
    if pipeline is None:
        raise EngineError(f"pipeline {job.pipeline!r} is not registered in this process")
    return pipeline


def record_event(session: Session, outbox: Outbox, job: Job, kind: str, **data: Any) -> None:
    session.add(JobEvent(job_id=job.id, kind=kind, data=data))
    outbox.notify(job.id, kind)


def _iso(value: Any) -> str | None:
    return value.isoformat(timespec="seconds") + "Z" if value is not None else None


def update_summary(job: Job, index: int, **changes: Any) -> dict[str, Any]:
    """Change the job's summary entry of step ``index``; assigns a new list so the JSON column is saved."""
    stages = [dict(s) for s in job.stages or []]
    stages[index].update(changes)
    job.stages = stages
    return stages[index]


def count_item(job: Job, index: int, outcome: str) -> dict[str, int]:
    """Add one ``completed`` or ``failed`` item to step ``index``'s counts; returns the new counts."""
    items = dict(job.stages[index]["items"])
    items[outcome] += 1
    update_summary(job, index, items=items)
    return items


def initial_summary(pipeline: Pipeline) -> list[dict[str, Any]]:
    return [
        {"name": step.name, "status": "pending", "progress": 0.0, "attempts": 0,
         "items": {"total": 0, "completed": 0, "failed": 0} if step.has_items else None,
         "started_at": None, "finished_at": None, "error": None}
        for step in pipeline.steps
    ]


# --- starting steps -------------------------------------------------------------------------------------


def start_step(session: Session, job: Job, pipeline: Pipeline, index: int, step_input: Any) -> Outbox:
    """Create the runs of step ``index`` and queue the first of them."""
    outbox = Outbox()
    step = pipeline.steps[index]
    now = utcnow()
    update_summary(job, index, status="processing", started_at=_iso(now), finished_at=None, error=None)
    job.step = step.name.replace("_", " ").capitalize()
    if step.kind == "stage":
        run = StageRun(job_id=job.id, step=index, item=STEP_ROW, name=step.name,
                       actor=step.actors[0].actor_name, input=step_input)
        session.add(run)
        session.flush()
        queue_run(run, step.policy_for(0), outbox)
        record_event(session, outbox, job, "stage", stage=step.name, status="queued")
        return outbox

    if step.kind == "fan_out":
        if not isinstance(step_input, list):
            info = ErrorInfo("invalid_output", f"step {step.name!r} needs a list from the step before it", False)
            return fail_job(session, job, step.name, info)
        items = list(step_input)
    else:
        items = [step_input] * len(step.actors)
    session.add(StageRun(job_id=job.id, step=index, item=STEP_ROW, name=step.name,
                         status=RunStatus.PROCESSING.value, started_at=now))
    runs = [
        StageRun(job_id=job.id, step=index, item=i, name=step.branches[i] if step.branches else step.name,
                 actor=step.actor_for(i).actor_name, input=value)
        for i, value in enumerate(items)
    ]
    session.add_all(runs)
    session.flush()
    update_summary(job, index, items={"total": len(runs), "completed": 0, "failed": 0})
    record_event(session, outbox, job, "stage", stage=step.name, status="processing", items=len(runs))
    if not runs:
        outbox.extend(finish_step(session, job, pipeline, index, []))
        return outbox
    cap = step.concurrency or len(runs)
    for run in runs[:cap]:
        queue_run(run, step.policy_for(run.item), outbox)
    return outbox


def _queue_waiting_items(session: Session, job: Job, step: Step, index: int, outbox: Outbox) -> None:
    """Keep a capped fan-out full: queue waiting items while fewer than the cap are in flight."""
    if not step.concurrency:
        return
    runs = session.scalars(
        select(StageRun).where(StageRun.job_id == job.id, StageRun.step == index, StageRun.item >= 0,
                               StageRun.status.in_([RunStatus.WAITING.value, RunStatus.QUEUED.value,
                                                    RunStatus.PROCESSING.value]))
        .order_by(StageRun.item)
    ).all()
    in_flight = sum(1 for r in runs if r.status != RunStatus.WAITING.value)
    for run in runs:
        if in_flight >= step.concurrency:
            break
        if run.status == RunStatus.WAITING.value:
            queue_run(run, step.policy_for(run.item), outbox)
            in_flight += 1


# --- running a stage ------------------------------------------------------------------------------------


def claim(session: Session, job_id: str, run_id: int, token: str, lease_seconds: float) -> StageRun | None:
    """Take a queued run for this message: ``None`` if the message is stale, duplicated or canceled."""
    job = lock_job(session, job_id)
    if job is None or job.status not in (JobStatus.PENDING.value, JobStatus.PROCESSING.value):
        return None
    now = utcnow()
    claimed = session.execute(
        update(StageRun)
        .where(StageRun.id == run_id, StageRun.status == RunStatus.QUEUED.value, StageRun.dispatch_token == token)
        .values(status=RunStatus.PROCESSING.value, attempts=StageRun.attempts + 1,
                lease_until=now + timedelta(seconds=lease_seconds), updated_at=now)
        .returning(StageRun.id)
    ).first()
    if claimed is None:
        return None
    run = session.get(StageRun, run_id, populate_existing=True)
    assert run is not None
    if run.started_at is None:
        run.started_at = now
    if job.status == JobStatus.PENDING.value:
        job.status = JobStatus.PROCESSING.value
        job.started_at = now
    if run.item == STEP_ROW:
        update_summary(job, run.step, status="processing", attempts=run.attempts)
    job.updated_at = now
    return run


def complete(session: Session, job_id: str, run_id: int, token: str, output: Any) -> Outbox:
    """Record a stage's result and move the job on."""
    outbox = Outbox()
    job = lock_job(session, job_id)
    run = _own_run(session, run_id, token)
    if job is None or run is None:
        return outbox
    now = utcnow()
    if job.status != JobStatus.PROCESSING.value:
        run.status = RunStatus.CANCELED.value
        run.finished_at = now
        return outbox
    run.status, run.output, run.progress, run.finished_at = RunStatus.COMPLETED.value, output, 1.0, now
    run.lease_until, run.error = None, None
    run.duration = (now - run.started_at).total_seconds() if run.started_at else None
    pipeline = pipeline_of(job)
    step = pipeline.steps[run.step]
    if run.item == STEP_ROW:
        return finish_step(session, job, pipeline, run.step, output)
    count_item(job, run.step, "completed")
    return _item_done(session, job, pipeline, step, run.step)


def _item_done(session: Session, job: Job, pipeline: Pipeline, step: Step, index: int) -> Outbox:
    """After an item ended: queue the next waiting one, or join the step when every item has ended."""
    outbox = Outbox()
    items = job.stages[index]["items"]
    if items["completed"] + items["failed"] < items["total"]:
        _queue_waiting_items(session, job, step, index, outbox)
        progress.update_job_progress(session, job, pipeline, index, outbox)
        return outbox
    runs = session.scalars(
        select(StageRun).where(StageRun.job_id == job.id, StageRun.step == index, StageRun.item >= 0)
        .order_by(StageRun.item)
    ).all()
    outputs = [r.output if r.status == RunStatus.COMPLETED.value else {"error": r.error} for r in runs]
    joined: Any = dict(zip(step.branches, outputs, strict=True)) if step.kind == "parallel" else outputs
    outbox.extend(finish_step(session, job, pipeline, index, joined))
    return outbox


def finish_step(session: Session, job: Job, pipeline: Pipeline, index: int, output: Any) -> Outbox:
    """Mark step ``index`` completed with ``output`` and start the next step, or complete the job."""
    outbox = Outbox()
    now = utcnow()
    step_row = session.scalars(
        select(StageRun).where(StageRun.job_id == job.id, StageRun.step == index, StageRun.item == STEP_ROW)
    ).one()
    if step_row.status != RunStatus.COMPLETED.value:
        step_row.status, step_row.output, step_row.progress, step_row.finished_at = (
            RunStatus.COMPLETED.value, output, 1.0, now)
        if step_row.started_at and step_row.duration is None:
            step_row.duration = (now - step_row.started_at).total_seconds()
    update_summary(job, index, status="completed", progress=100.0, finished_at=_iso(now),
                   attempts=step_row.attempts or 1)
    record_event(session, outbox, job, "stage", stage=pipeline.steps[index].name, status="completed")
    if index + 1 < len(pipeline.steps):
        progress.update_job_progress(session, job, pipeline, index + 1, outbox, fraction=0.0)
        outbox.extend(start_step(session, job, pipeline, index + 1, output))
        return outbox
    job.result = finalize_result(session, job, output)
    _finish_job(session, job, JobStatus.COMPLETED, outbox)
    job.progress, job.step, job.eta_seconds = 100.0, "Done", 0.0
    return outbox


def _finish_job(session: Session, job: Job, status: JobStatus, outbox: Outbox) -> None:
    now = utcnow()
    job.status, job.finished_at, job.updated_at = status.value, now, now
    job.eta_seconds, job.eta_at = None, None
    record_event(session, outbox, job, "status", status=status.value)
    from pipelines import hooks

    hooks.job_finished(session, job, outbox)


def fail_job(session: Session, job: Job, stage_name: str, info: ErrorInfo) -> Outbox:
    """Fail the job at ``stage_name``; runs not started are canceled, running ones become no-ops."""
    outbox = Outbox()
    job.error = {"stage": stage_name, **info.as_dict()}
    job.step = f"Failed at {stage_name}"
    _cancel_open_runs(session, job)
    index = next((i for i, s in enumerate(job.stages or []) if s["name"] == stage_name), None)
    if index is not None:
        update_summary(job, index, status="failed", error=info.as_dict(), finished_at=_iso(utcnow()))
    _finish_job(session, job, JobStatus.FAILED, outbox)
    return outbox


def _cancel_open_runs(session: Session, job: Job) -> None:
    session.execute(
        update(StageRun)
        .where(StageRun.job_id == job.id,
               StageRun.status.in_([RunStatus.WAITING.value, RunStatus.QUEUED.value]))
        .values(status=RunStatus.CANCELED.value, updated_at=utcnow())
    )


def _own_run(session: Session, run_id: int, token: str) -> StageRun | None:
    """The run, if this message (``token``) still holds it."""
    run = session.get(StageRun, run_id, populate_existing=True)
    if run is None or run.status != RunStatus.PROCESSING.value or run.dispatch_token != token:
        return None
    return run


def backoff(policy: RetryPolicy, attempt: int) -> float:
    """Exponential backoff with jitter, in seconds, for the retry after ``attempt`` attempts."""
    ceiling = min(policy.max_backoff, policy.min_backoff * 2 ** max(0, attempt - 1))
    return random.uniform(ceiling / 2, ceiling)


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

    if isinstance(exc, PollLater) or (info is not None and info.rate_limited):
        delay = exc.delay if isinstance(exc, PollLater) else max(1.0, info.retry_after or policy.min_backoff)
        if run.waited + delay <= policy.max_wait:
            run.waited += delay
            run.attempts -= 1  # waiting on a provider spends no retry
            queue_run(run, policy, outbox, delay=delay)
            return outbox
        info = ErrorInfo("provider_timeout", f"gave up waiting on the provider after {policy.max_wait:.0f}s",
                         False)
    assert info is not None
    if info.transient and run.attempts <= policy.retries:
        delay = max(info.retry_after or 0.0, backoff(policy, run.attempts))
        run.error = info.as_dict()
        queue_run(run, policy, outbox, delay=delay)
        if run.item == STEP_ROW:
            update_summary(job, run.step, attempts=run.attempts)
        record_event(session, outbox, job, "stage", stage=step.name, status="retrying", item=run.item,
                     code=info.code, delay=round(delay, 2))
        return outbox
    return _run_failed(session, job, pipeline, step, run, info)


def _run_failed(session: Session, job: Job, pipeline: Pipeline, step: Step, run: StageRun, info: ErrorInfo,
                ) -> Outbox:
    run.status, run.error, run.finished_at, run.lease_until = RunStatus.FAILED.value, info.as_dict(), utcnow(), None
    if run.item != STEP_ROW and step.on_failure == "tolerate":
        job.errors = [*(job.errors or []), {"stage": step.name, "item": run.item, **info.as_dict()}]
        count_item(job, run.step, "failed")
        return _item_done(session, job, pipeline, step, run.step)
    return fail_job(session, job, step.name, info)


def requeue(session: Session, job_id: str, run_id: int, token: str) -> Outbox:
    """Hand a run back unharmed (its worker is shutting down): it runs again at once, no retry spent."""
    outbox = Outbox()
    job = lock_job(session, job_id)
    run = _own_run(session, run_id, token)
    if job is None or run is None or job.status != JobStatus.PROCESSING.value:
        return outbox
    run.attempts -= 1
    queue_run(run, pipeline_of(job).steps[run.step].policy_for(max(run.item, 0)), outbox)
    return outbox


def open_runs(session: Session, job_id: str) -> list[StageRun]:
    return list(session.scalars(
        select(StageRun).where(StageRun.job_id == job_id, StageRun.status.not_in(TERMINAL_RUN))
    ))
