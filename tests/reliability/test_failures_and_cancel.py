"""Failures and cancels inside a fan-out: bounded retries, a sanitised error, no hang, nothing run after the end."""

from __future__ import annotations

import time
import uuid
from datetime import datetime

import redis

from pipelines.services.jobs import cancel_job, start_job
from pipelines.store.db import transaction
from pipelines.store.models import Job, StageRun
from tests.reliability.fault_injection import resend, stored_body
from tests.reliability.faulty import CREATE_PATH
from tests.reliability.invariant import assert_invariant, dispatch_token, executions, job_events, stage_runs
from tests.support.jobs import wait_for_job
from tests.support.services import CANARY_KEY, RELIABILITY_REDIS_URL
from tests.support.waiting import wait_until

#: What the failing provider answers: its body repeats the caller's key, which must not reach the job.
LEAKY_503 = {"error": f"upstream unavailable for key {CANARY_KEY}"}


def ended_at(row: Job | StageRun | None) -> datetime:
    """When a canceled job, or a run that had started, ended; both have ended by the time it is read."""
    assert row is not None and row.finished_at is not None, f"{row!r} has ended"
    return row.finished_at


def _stored_text(job_id: str) -> str:
    """Everything the job store holds about the job, as text."""
    from pipelines.services.jobs import get_job

    runs = [(r.input, r.output, r.error, r.checkpoint, r.message) for r in stage_runs(job_id)]
    return repr((get_job(job_id), runs, [e.data for e in job_events(job_id)]))


def test_retries_exhausted_in_a_middle_stage_fail_the_job_with_a_sanitised_error(start_worker, provider, measure):
    # Given a capped fan-out of eight items whose third calls a provider that keeps answering 503
    emulator = provider()
    emulator.fail_next(CREATE_PATH, 503, body=LEAKY_503, times=100)
    worker = start_worker("w", threads=4)
    started = time.monotonic()
    job = start_job(pipeline="rel_fanout", input={"items": 8, "sleep": 1.0, "provider_items": [2]})["id"]
    # When the item's retries run out
    failed = assert_invariant(wait_for_job(job, timeout=30)["id"], status="failed")
    measure("retries exhausted: the job failed after", time.monotonic() - started)
    # Then the job failed at the fan-out with the provider's error, the key redacted
    assert failed["error"]["stage"] == "items" and failed["error"]["code"] == "provider_unavailable"
    assert "***" in failed["error"]["message"]
    assert CANARY_KEY not in _stored_text(job) and CANARY_KEY not in worker.output()
    # And the item was tried exactly 1 + its 2 retries times
    assert len(emulator.calls_to(CREATE_PATH, "POST")) == 3
    # And the items behind the cap never ran, nor did the stage after the fan-out
    ran = {(r["stage"], r["item"]) for r in executions(job, "start")}
    assert ("end", -1) not in ran and not any(r.step == 2 for r in stage_runs(job))
    never = [r for r in stage_runs(job) if r.name == "items" and r.started_at is None]
    assert never and all(r.status == "canceled" for r in never)
    assert not ran & {("items", r.item) for r in never}


def test_a_tolerant_fan_out_completes_with_the_failed_item_reported(start_worker, provider):
    # Given the same fan-out, declared to tolerate failed items
    emulator = provider()
    emulator.fail_next(CREATE_PATH, 503, body=LEAKY_503, times=100)
    start_worker("w", threads=4)
    job = start_job(pipeline="rel_fanout_tolerant", input={"items": 6, "sleep": 0.3, "provider_items": [2]})["id"]
    # When the item's retries run out
    done = assert_invariant(wait_for_job(job, timeout=30)["id"], status="completed")
    # Then the job completes, reporting the failed item, and the last stage ran on every result
    assert [(e["stage"], e["item"], e["code"]) for e in done["errors"]] == [("items", 2, "provider_unavailable")]
    items = done["result"]["final"]
    assert [i.get("index") for i in items] == [0, 1, None, 3, 4, 5]
    assert items[2]["error"]["code"] == "provider_unavailable" and CANARY_KEY not in repr(done)


def test_cancel_during_a_fan_out_skips_the_remaining_items_and_late_messages_do_nothing(start_worker, measure):
    client = redis.Redis.from_url(RELIABILITY_REDIS_URL)
    # Given a capped fan-out of six slow items, the first two running
    start_worker("w", threads=4)
    job = start_job(pipeline="rel_fanout", input={"items": 6, "sleep": 20})["id"]
    wait_until(lambda: len([r for r in executions(job, "start") if r["stage"] == "items"]) == 2, timeout=30,
               what="both capped items to start")
    tokens = [dispatch_token(r) for r in stage_runs(job)
              if r.name == "items" and r.item >= 0 and r.status == "processing"]
    assert len(tokens) == 2
    bodies = [stored_body(client, token) for token in tokens]
    # When the job is canceled
    canceled_at = time.monotonic()
    assert cancel_job(job)["status"] == "canceled"
    # Then the running items stop at their next progress report, and the waiting ones never start
    canceled = assert_invariant(job, status="canceled")
    runs = [r for r in stage_runs(job) if r.name == "items" and r.item >= 0]
    assert all(r.status == "canceled" for r in runs)
    stopped = max(ended_at(r) for r in runs if r.started_at is not None)
    with transaction() as session:
        canceled_in_store = ended_at(session.get(Job, canceled["id"]))
    measure("cancel: the running fan-out items stopped after", (stopped - canceled_in_store).total_seconds())
    assert time.monotonic() - canceled_at < 5
    assert {r["item"] for r in executions(job, "start") if r["stage"] == "items"} == {
        r.item for r in runs if r.started_at is not None}
    assert not [r for r in executions(job, "done") if r["stage"] == "items"]
    # And late copies of the running items' messages are delivered and do nothing
    before = len(executions(job, "start"))
    for body in bodies:
        resend(client, body, f"late-{uuid.uuid4()}")
    wait_until(lambda: len(executions(job, "skipped")) == len(bodies), timeout=10,
               what="the late messages to be delivered")
    assert len(executions(job, "start")) == before
    assert_invariant(job, status="canceled")
