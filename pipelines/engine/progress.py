"""Job progress: the weighted sum of step progress, never lowered, with a step text and an ETA.

A fan-out's progress is the mean of its items. The ETA blends what the job's own rate
predicts with the durations of past runs of the same pipeline and step, trusting the
observed rate more as the job advances. Once a job's first step has told its size (the
seconds of media it prepared, or the items it made: a storyboard's scenes), the past
durations of the later steps are taken per unit of size and scaled by this job's size, so a
two-hour lecture is not promised the minutes a ten-minute one took.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from conveyor.statuses import JobStatus
from pipelines.definition import Pipeline
from pipelines.engine.dispatch import Outbox
from pipelines.store.jobrow import JobLike, JobRow
from pipelines.store.models import STEP_ROW, Job, RunStatus, StageRun, utcnow

#: s; how long past step durations are cached per pipeline.
HISTORY_TTL = 60.0
#: How many recent completed step runs of a pipeline feed its average durations.
HISTORY_WINDOW = 200

#: Most job sizes remembered (a size never changes once the first step has told it).
SIZES_KEPT = 4096

_history: dict[str, tuple[float, dict[int, float]]] = {}
_rates: dict[str, tuple[float, dict[int, float]]] = {}
_sizes: dict[str, float | None] = {}
_history_lock = threading.Lock()


def step_fraction(session: Session, job: JobRow, pipeline: Pipeline, index: int) -> float:
    """The progress (0–1) of step ``index`` from its runs."""
    if pipeline.steps[index].has_items:
        counts = (job.stages or [])[index].get("items")
        total = counts["total"] if counts else 0
        if not total:
            return 0.0
        done = session.scalar(
            select(func.sum(StageRun.progress)).where(
                StageRun.job_id == job.id, StageRun.step == index, StageRun.item >= 0
            )
        )
        return float(done or 0.0) / total
    value = session.scalar(
        select(StageRun.progress).where(StageRun.job_id == job.id, StageRun.step == index, StageRun.item == STEP_ROW)
    )
    return float(value or 0.0)


def _fresh(cache: dict[str, tuple[float, dict[int, float]]], pipeline: str) -> dict[int, float] | None:
    """``pipeline``'s entry of a history cache, or None when stale or never read."""
    with _history_lock:
        cached = cache.get(pipeline)
    if cached and time.monotonic() - cached[0] < HISTORY_TTL:
        return cached[1]
    return None


def cached_durations(pipeline: str) -> dict[int, float] | None:
    """The cached past step durations of ``pipeline``, or None when stale or never read."""
    return _fresh(_history, pipeline)


def past_durations(session: Session, pipeline: str) -> dict[int, float]:
    """Mean seconds each step of ``pipeline`` took in recent completed runs (cached)."""
    cached = _fresh(_history, pipeline)
    if cached is not None:
        return cached
    now = time.monotonic()
    recent = (
        select(StageRun.step, StageRun.duration)
        .join(Job, Job.id == StageRun.job_id)
        .where(Job.pipeline == pipeline, StageRun.item == STEP_ROW, StageRun.status == RunStatus.COMPLETED.value,
               StageRun.duration.is_not(None))
        .order_by(StageRun.id.desc())
        .limit(HISTORY_WINDOW)
        .subquery()
    )
    rows = session.execute(select(recent.c.step, func.avg(recent.c.duration)).group_by(recent.c.step)).all()
    durations = {int(step): float(avg) for step, avg in rows}
    with _history_lock:
        _history[pipeline] = (now, durations)
    return durations


def input_size(first_output: Any) -> float | None:
    """How big a job is, from its first step's output: the seconds of media it prepared
    (``duration``), or how many items it made (a list: a storyboard's scenes). None when it tells neither."""
    if isinstance(first_output, dict):
        duration = first_output.get("duration")
        return float(duration) if isinstance(duration, int | float) and duration > 0 else None
    if isinstance(first_output, list):
        return float(len(first_output)) or None
    return None


def _first_outputs(session: Session, job_ids: list[str]) -> dict[str, Any]:
    rows = session.execute(select(StageRun.job_id, StageRun.output).where(
        StageRun.job_id.in_(job_ids), StageRun.step == 0, StageRun.item == STEP_ROW,
        StageRun.status == RunStatus.COMPLETED.value))
    return {job_id: output for job_id, output in rows}


def remember_size(job_id: str, size: float | None) -> None:
    """Keep ``job_id``'s size, known for good once its first step has completed."""
    with _history_lock:
        if len(_sizes) >= SIZES_KEPT:
            _sizes.clear()
        _sizes[job_id] = size


def known_size(job_id: str) -> float | None:
    """The size of ``job_id`` if this process has seen it, without asking the database."""
    with _history_lock:
        return _sizes.get(job_id)


def job_size(session: Session, job_id: str) -> float | None:
    """The size of ``job_id`` (see :func:`input_size`), or None before its first step completed."""
    if job_id in _sizes:
        return _sizes[job_id]
    outputs = _first_outputs(session, [job_id])
    size = input_size(outputs[job_id]) if job_id in outputs else None
    if job_id in outputs:  # known for good: remember it
        remember_size(job_id, size)
    return size


def cached_rates(pipeline: str) -> dict[int, float] | None:
    """The cached past seconds per unit of size of ``pipeline``'s steps, or None when stale or never read."""
    return _fresh(_rates, pipeline)


def past_rates(session: Session, pipeline: str) -> dict[int, float]:
    """Seconds per unit of size each step of ``pipeline`` took in recent completed runs of jobs whose
    size is known (total seconds over total size, so large jobs weigh more; cached)."""
    cached = _fresh(_rates, pipeline)
    if cached is not None:
        return cached
    now = time.monotonic()
    recent = session.execute(
        select(StageRun.job_id, StageRun.step, StageRun.duration)
        .join(Job, Job.id == StageRun.job_id)
        .where(Job.pipeline == pipeline, StageRun.item == STEP_ROW, StageRun.status == RunStatus.COMPLETED.value,
               StageRun.duration.is_not(None))
        .order_by(StageRun.id.desc())
        .limit(HISTORY_WINDOW)
    ).all()
    sizes = {job_id: input_size(output)
             for job_id, output in _first_outputs(session, list({r.job_id for r in recent})).items()}
    seconds: dict[int, float] = {}
    units: dict[int, float] = {}
    for job_id, step, duration in recent:
        size = sizes.get(job_id)
        if size:
            seconds[step] = seconds.get(step, 0.0) + (duration or 0.0)
            units[step] = units.get(step, 0.0) + size
    rates = {step: seconds[step] / units[step] for step in seconds}
    with _history_lock:
        _rates[pipeline] = (now, rates)
    return rates


#: A step's fraction done below which its rate says nothing yet (its first reports, or none at all).
MEASURABLE = 0.05
#: s; a step's rate measured over less time says nothing of the steps after it (a quick download or split).
MIN_OBSERVED = 5.0


def eta_from(progress: float, step_start_progress: float, step_started: datetime | None, now: datetime,
             history: dict[str, float] | None, fraction: float) -> float | None:
    """Seconds left, or None when there is nothing to go on yet.

    Two estimates, blended (trusting the first more as the job advances): the current step's own
    rate (progress points per second since it started) over the points left, once the step has made
    measurable progress over a measurable time; and the past durations of this step (the part left) and the steps after it.
    The job's overall rate is not used: quick first steps (a download, a split) would make a long
    transcription look a few seconds from done.

    Parameters:
      progress: the job's progress now (0–100); step_start_progress: what it was when the step began.
      history: ``{"self": s, "after": s}`` past seconds of this step and of the steps after it, or None.
      fraction: how much of the current step is done (0–1).
    """
    from_history = None if history is None else (1 - fraction) * history["self"] + history["after"]
    from_rate = None
    gained = progress - step_start_progress
    observed = (now - step_started).total_seconds() if step_started is not None else 0.0
    if observed >= MIN_OBSERVED and fraction >= MEASURABLE and gained > 0:
        from_rate = observed * (100.0 - progress) / gained
    if from_history is not None and from_rate is not None:
        trust = progress / 100.0
        return (1 - trust) * from_history + trust * from_rate
    return from_rate if from_rate is not None else from_history


def history_of(durations: dict[int, float] | None, steps: int, index: int) -> dict[str, float] | None:
    """Past seconds of step ``index`` and of the steps after it (None: not known for all of them)."""
    if durations is None or not all(i in durations for i in range(index, steps)):
        return None
    return {"self": durations[index], "after": sum(durations[i] for i in range(index + 1, steps))}


def sized_history(rates: dict[int, float] | None, size: float | None, steps: int,
                  index: int) -> dict[str, float] | None:
    """:func:`history_of` for a job of ``size``: past seconds per unit of size times its size.

    None at the first step (it is what tells the size), without a size, or without a rate for every
    step left.
    """
    if not rates or not size or index < 1:
        return None
    return history_of({step: rate * size for step, rate in rates.items()}, steps, index)


def parse_iso(value: str | None) -> datetime | None:
    """A summary's time (``2026-11-22T10:00:00Z``) as the store keeps times (naive UTC)."""
    return datetime.fromisoformat(value.rstrip("Z")) if value else None


def estimate_eta(session: Session, job: JobRow, pipeline: Pipeline, index: int, fraction: float) -> float | None:
    """Seconds left for ``job`` while step ``index`` is ``fraction`` done (see :func:`eta_from`).

    The history is scaled by the job's size when it and the past rates are known (:func:`sized_history`),
    else it is the plain mean of past durations.
    """
    steps = len(pipeline.steps)
    history = None
    if index >= 1:
        history = sized_history(past_rates(session, pipeline.name), job_size(session, job.id), steps, index)
    if history is None:
        history = history_of(past_durations(session, pipeline.name), steps, index)
    step_started = parse_iso(job.stages[index].get("started_at") if job.stages else None)
    start = 100.0 * pipeline.weight_before(index) / pipeline.total_weight
    return eta_from(job.progress or 0.0, start, step_started, utcnow(), history, fraction)


def update_job_progress(
    session: Session, job: JobRow, pipeline: Pipeline, index: int, outbox: Outbox, *, fraction: float | None = None,
) -> None:
    """Recompute the job's progress while step ``index`` runs; shown progress never goes down."""
    if fraction is None:
        fraction = step_fraction(session, job, pipeline, index)
    fraction = min(1.0, max(0.0, fraction))
    weighted = (pipeline.weight_before(index) + pipeline.steps[index].weight * fraction) / pipeline.total_weight
    job.progress = round(max(job.progress or 0.0, 100.0 * weighted), 2)
    stages = [s.copy() for s in job.stages or []]
    if index < len(stages):
        stages[index]["progress"] = round(max(stages[index].get("progress") or 0.0, 100.0 * fraction), 2)
        job.stages = stages
    if job.status == JobStatus.PROCESSING.value:
        job.eta_seconds = estimate_eta(session, job, pipeline, index, fraction)
        job.eta_at = utcnow()
    job.updated_at = utcnow()
    outbox.notify(job.id, "progress")


def remaining_eta(job: JobLike) -> int | None:
    """The stored ETA less the time since it was computed, in whole seconds."""
    if job.eta_seconds is None or job.status not in (JobStatus.PENDING.value, JobStatus.PROCESSING.value):
        return None
    since = (utcnow() - job.eta_at).total_seconds() if job.eta_at else 0.0
    return max(0, round(job.eta_seconds - since))
