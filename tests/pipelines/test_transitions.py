"""The engine's decisions besides a stage's end, as pure functions: no store, no clock, no chance."""

from __future__ import annotations

import pytest

from actors.errors import ErrorInfo
from conveyor.job_shape import StageOut
from conveyor.statuses import StageStatus
from pipelines.definition import RetryPolicy
from pipelines.engine.transitions import (
    WORKER_LOST,
    Fail,
    Retry,
    Wait,
    after_failure,
    after_loss,
    canceled_summary,
    item_failure_fails_the_step,
    items_all_ended,
    items_to_queue,
    reopened_summary,
    resume_point,
)

POLICY = RetryPolicy(retries=2, min_backoff=1.0, max_backoff=8.0, time_limit=60.0, max_wait=100.0)
TRANSIENT = ErrorInfo("provider_error", "503", True)
PERMANENT = ErrorInfo("invalid_media", "not audio", False)


def step(name: str, status: StageStatus, *, finished_at: str | None) -> StageOut:
    """One step of a job's stage summary, with the fields these transitions read."""
    return {"name": name, "status": status, "progress": 0.0, "attempts": 1, "finished_at": finished_at}


def highest(low: float, high: float) -> float:
    return high


def decide(**state):
    values = {"attempts": 1, "waited": 0.0, "poll_after": None, "info": TRANSIENT, "uniform": highest, **state}
    return after_failure(POLICY, **values)


@pytest.mark.parametrize(("attempts", "expected"), [(1, Retry(1.0, TRANSIENT)), (2, Retry(2.0, TRANSIENT)),
                                                    (3, Fail(TRANSIENT))])
def test_a_transient_failure_retries_with_a_doubling_backoff_until_the_retries_are_spent(attempts, expected):
    assert decide(attempts=attempts) == expected


def test_the_backoff_is_capped_and_jittered_between_half_and_all_of_it():
    many = RetryPolicy(retries=20, min_backoff=1.0, max_backoff=8.0, time_limit=60.0, max_wait=100.0)
    high = after_failure(many, attempts=10, waited=0, poll_after=None, info=TRANSIENT, uniform=highest)
    assert high == Retry(8.0, TRANSIENT)
    low = after_failure(many, attempts=10, waited=0, poll_after=None, info=TRANSIENT, uniform=lambda a, b: a)
    assert low == Retry(4.0, TRANSIENT)


def test_a_provider_asking_for_more_time_than_the_backoff_gets_it():
    slow = ErrorInfo("provider_error", "busy", True, retry_after=30.0)
    assert decide(info=slow) == Retry(30.0, slow)


def test_a_permanent_failure_fails_at_once():
    assert decide(info=PERMANENT) == Fail(PERMANENT)


def test_poll_later_and_rate_limits_wait_without_spending_a_retry_until_max_wait():
    assert decide(poll_after=20.0, info=None, attempts=3) == Wait(20.0)
    limited = ErrorInfo("rate_limited", "429", True, retry_after=None, rate_limited=True)
    assert decide(info=limited) == Wait(1.0)  # at least 1 s
    gave_up = decide(poll_after=20.0, info=None, waited=90.0)
    assert isinstance(gave_up, Fail) and gave_up.info.code == "provider_timeout"


def test_a_lost_run_runs_again_unless_its_lease_lapsed_more_often_than_it_may_retry():
    assert after_loss(POLICY, attempts=5, expired_lease=False) == Retry(0.0, WORKER_LOST)  # a lost message
    assert after_loss(POLICY, attempts=2, expired_lease=True) == Retry(0.0, WORKER_LOST)
    assert after_loss(POLICY, attempts=3, expired_lease=True) == Fail(WORKER_LOST)


def test_a_failed_item_fails_its_step_unless_tolerated_and_a_step_run_always_does():
    assert item_failure_fails_the_step(-1, "tolerate")
    assert item_failure_fails_the_step(3, "fail")
    assert not item_failure_fails_the_step(3, "tolerate")


def test_a_step_joins_when_every_item_ended_either_way():
    assert not items_all_ended({"total": 3, "completed": 1, "failed": 1})
    assert items_all_ended({"total": 3, "completed": 2, "failed": 1})
    assert items_all_ended({"total": 0, "completed": 0, "failed": 0})


def test_waiting_items_are_queued_up_to_the_cap_in_order():
    statuses = ["completed", "processing", "waiting", "waiting", "waiting"]
    assert items_to_queue(statuses, 2) == [2]
    assert items_to_queue(statuses, 0) == [2, 3, 4]
    assert items_to_queue(["processing", "queued", "waiting"], 2) == []


def test_a_resume_starts_at_the_first_step_not_completed():
    assert resume_point(["completed", "failed", None]) == 1
    assert resume_point(["completed", "completed", None]) == 2
    assert resume_point(["completed", "completed"]) == 2  # only the ending was lost


def test_a_cancel_closes_every_unfinished_step_and_a_resume_reopens_those_it_closed():
    stages = [step("a", StageStatus.COMPLETED, finished_at="t0"),
              step("b", StageStatus.PROCESSING, finished_at=None),
              step("c", StageStatus.PENDING, finished_at=None)]
    canceled = canceled_summary(stages, "t1")
    assert [(s["status"], s["finished_at"]) for s in canceled] == [
        ("completed", "t0"), ("canceled", "t1"), ("canceled", None)]
    assert [s["status"] for s in reopened_summary(canceled)] == ["completed", "pending", "pending"]
