"""The engine's decisions that are not a stage's successful end, as pure functions of state and event.

:mod:`pipelines.engine.handoff` plans a stage's end; this module decides everything else the state machine
does: what a failed attempt leads to (wait on the provider, retry after a backoff, or fail), what a
run whose worker or message was lost leads to, what a failed fan-out item does to its step, where a
resumed job starts again, and how a cancel or a resume changes the stage summary. Each takes plain
values and returns a decision; :mod:`pipelines.engine.machine` applies it under the job's row lock (through
the SQLAlchemy session, the same code on PostgreSQL and SQLite). No database, no clock, no randomness
that is not passed in, so every branch is tested without a store (``tests/pipelines/test_transitions.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from actors.errors import ErrorInfo
from conveyor.job_shape import ItemCounts, StageOut
from conveyor.statuses import StageStatus
from pipelines.definition import RetryPolicy


@dataclass(frozen=True)
class Wait:
    """Queue the run again after ``delay`` s without spending a retry (poll-later, a rate limit)."""

    delay: float


@dataclass(frozen=True)
class Retry:
    """Queue the run again after ``delay`` s: a transient failure with retries left."""

    delay: float
    info: ErrorInfo


@dataclass(frozen=True)
class Fail:
    """The run fails for good with ``info``."""

    info: ErrorInfo


Decision = Wait | Retry | Fail


def backoff(policy: RetryPolicy, attempt: int, uniform: Callable[[float, float], float]) -> float:
    """Exponential backoff with jitter, in seconds, for the retry after ``attempt`` attempts."""
    ceiling = min(policy.max_backoff, policy.min_backoff * 2 ** max(0, attempt - 1))
    return uniform(ceiling / 2, ceiling)


def after_failure(policy: RetryPolicy, *, attempts: int, waited: float, poll_after: float | None,
                  info: ErrorInfo | None, uniform: Callable[[float, float], float]) -> Decision:
    """What a stage attempt that raised leads to.

    ``poll_after``: the delay a stage asked for with ``poll_later`` (then ``info`` is None); a rate
    limit is a wait too. Waiting spends no retry but is bounded by ``policy.max_wait`` in total.
    """
    if poll_after is not None or (info is not None and info.rate_limited):
        if poll_after is not None:
            delay = poll_after
        else:
            assert info is not None
            delay = max(1.0, info.retry_after or policy.min_backoff)
        if waited + delay <= policy.max_wait:
            return Wait(delay)
        info = ErrorInfo("provider_timeout", f"gave up waiting on the provider after {policy.max_wait:.0f}s", False)
    assert info is not None
    if info.transient and attempts <= policy.retries:
        return Retry(max(info.retry_after or 0.0, backoff(policy, attempts, uniform)), info)
    return Fail(info)


WORKER_LOST = ErrorInfo("worker_lost", "the worker running this stage stopped, too many times", False)


def after_loss(policy: RetryPolicy, *, attempts: int, expired_lease: bool) -> Retry | Fail:
    """A run whose worker stopped (its lease lapsed) or whose message vanished: run it again, unless a
    lapsed lease has happened more often than the step may retry."""
    if expired_lease and attempts > policy.retries:
        return Fail(WORKER_LOST)
    return Retry(0.0, WORKER_LOST)


def item_failure_fails_the_step(item: int, on_failure: str) -> bool:
    """Whether a failed run fails its step (and the job): a step's own run always; an item unless tolerated."""
    return item < 0 or on_failure != "tolerate"


def items_all_ended(items: ItemCounts) -> bool:
    """Whether every item of a fan-out or parallel step has ended (the step joins)."""
    return items["completed"] + items["failed"] >= items["total"]


def resume_point(step_statuses: Sequence[str | None]) -> int:
    """The first step a resumed job runs again: the first whose own run is missing or not completed.

    ``step_statuses``: per step of the pipeline, its own run's status (None when never started).
    Equal to the number of steps when every step completed (only the job's ending was lost).
    """
    for index, status in enumerate(step_statuses):
        if status != "completed":
            return index
    return len(step_statuses)


def canceled_summary(stages: list[StageOut], now: str | None) -> list[StageOut]:
    """The stage summary after a cancel: every unfinished step ``canceled`` (a running one ends ``now``)."""
    return [{**s, "status": StageStatus.CANCELED,
             "finished_at": now if s["status"] == StageStatus.PROCESSING else None}
            if s["status"] in (StageStatus.PENDING, StageStatus.PROCESSING) else s for s in stages]


def reopened_summary(stages: list[StageOut]) -> list[StageOut]:
    """The stage summary of a resumed job: steps a cancel closed before they ran are pending again."""
    return [{**s, "status": StageStatus.PENDING, "finished_at": None} if s["status"] == StageStatus.CANCELED else s
            for s in stages]


def items_to_queue(statuses: Sequence[str], cap: int) -> list[int]:
    """Positions of the waiting items to queue now so that at most ``cap`` (0: all) are in flight."""
    limit = cap or len(statuses)
    in_flight = sum(1 for s in statuses if s in ("queued", "processing"))
    chosen: list[int] = []
    for position, status in enumerate(statuses):
        if in_flight >= limit:
            break
        if status == "waiting":
            chosen.append(position)
            in_flight += 1
    return chosen
