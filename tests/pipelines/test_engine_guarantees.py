"""The design's guarantees on StubBroker + SQLite: duplicates, retries, limits, cancel, resume, waits."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import dramatiq
import pytest
from sqlalchemy import select, update

from actors.context import current_stage
from actors.errors import PermanentError, RateLimited, TransientError
from actors.stage import stage_actor
from conveyor.errors import JobConflict
from pipelines.definition import Pipeline, fan_out, stage
from pipelines.engine import reconciler
from pipelines.engine.dispatch import JOB_OPTION, RUN_OPTION, TOKEN_OPTION
from pipelines.services.jobs import cancel_job, get_job, retry_job, start_job
from pipelines.store.db import transaction
from pipelines.store.models import StageRun, utcnow
from pipelines.worker import add_pipeline
from tests.support.jobs import wait_for_job
from tests.support.waiting import unacknowledged, wait_until_settled

calls: dict[str, int] = {}
switches: dict[str, bool] = {}
#: Calls left that fail before the stage passes.
failures: dict[str, int] = {}
napping = threading.Event()


def _count(name: str) -> int:
    calls[name] = calls.get(name, 0) + 1
    return calls[name]


@stage_actor(retries=2, min_backoff=0.01, max_backoff=0.05)
def flaky(value):
    """Fails transiently while its switch is on, or for its next ``failures["flaky"]`` calls."""
    _count("flaky")
    if switches.get("flaky") or failures.get("flaky", 0) > 0:
        failures["flaky"] = failures.get("flaky", 0) - 1
        raise TransientError("service unavailable")
    return {"ok": value}


@stage_actor(retries=5, min_backoff=0.01)
def broken(value):
    _count("broken")
    raise PermanentError("this input can never work", code="bad_input")


@stage_actor(retries=1, min_backoff=0.01, time_limit=0.3)
def slow(value):
    _count("slow")
    for _ in range(300):  # 3 s, in steps the time limit can interrupt (it cannot interrupt one long sleep)
        time.sleep(0.01)
    return value


@stage_actor(retries=0)
def throttled(value):
    if _count("throttled") <= 2:
        raise RateLimited("429 from the provider", retry_after=0.1)
    return value


@stage_actor(retries=0)
def counted(value):
    value = value["n"] if isinstance(value, dict) else value
    _count(f"counted:{value}")
    if switches.get(f"fail:{value}"):
        raise PermanentError("switch on")
    return value * 10


@stage_actor(retries=0)
def napper(value):
    ctx = current_stage()
    napping.set()
    for n in range(40):
        ctx.progress(n / 40, "napping")
        time.sleep(0.05)
    return value


@stage_actor(retries=0)
def values(request):
    return request["values"]


retrying = Pipeline("retrying", [stage(flaky, name="flaky")])
failing = Pipeline("failing", [stage(broken, name="broken"), stage(flaky, name="after")])
limited = Pipeline("limited", [stage(slow, name="slow")])
rate_limited = Pipeline("rate_limited", [stage(throttled, name="throttled")])
resumable = Pipeline("resumable", [
    stage(counted, name="first"),
    stage(flaky, name="second"),
])
items_pipeline = Pipeline("items", [stage(values, name="values"), fan_out(counted, name="items", concurrency=2)])
sleepy = Pipeline("sleepy", [stage(values, name="values"), fan_out(napper, name="naps", concurrency=1),
                             stage(counted, name="never")])


@pytest.fixture(autouse=True)
def _reset(stub_broker):
    for pipeline in (retrying, failing, limited, rate_limited, resumable, items_pipeline, sleepy):
        add_pipeline(pipeline, replace=True)
    calls.clear()
    switches.clear()
    failures.clear()
    napping.clear()


def test_transient_errors_are_retried_with_backoff_until_they_pass(stub_worker):
    failures["flaky"] = 2
    job = start_job(pipeline=retrying.name, input={"n": 1})
    done = wait_for_job(job["id"])
    assert done["status"] == "completed"
    assert done["result"] == {"ok": {"n": 1}}
    assert calls["flaky"] == 3  # two transient failures, then a pass on the last retry
    assert done["stages"][0]["attempts"] == 3


def test_transient_errors_fail_the_job_once_the_stage_retries_are_spent(stub_worker):
    switches["flaky"] = True
    done = wait_for_job(start_job(pipeline=retrying.name, input={})["id"])
    assert done["status"] == "failed"
    assert done["error"] == {"stage": "flaky", "code": "transient_error", "message": "service unavailable"}
    assert calls["flaky"] == 3  # one attempt and two retries
    assert done["stages"][0]["attempts"] == 3


def test_permanent_errors_fail_at_once_without_retries(stub_worker):
    done = wait_for_job(start_job(pipeline=failing.name, input={})["id"])
    assert done["status"] == "failed"
    assert done["error"]["code"] == "bad_input"
    assert calls == {"broken": 1}


def test_a_stage_past_its_time_limit_is_stopped_and_retried_within_bounds(stub_worker):
    done = wait_for_job(start_job(pipeline=limited.name, input={})["id"], timeout=20)
    assert done["status"] == "failed"
    assert done["error"]["code"] == "timeout"
    assert calls["slow"] == 2


def test_a_rate_limited_stage_waits_without_spending_its_retries(stub_worker):
    done = wait_for_job(start_job(pipeline=rate_limited.name, input={"v": 1})["id"])
    assert done["status"] == "completed"
    assert calls["throttled"] == 3  # two 429s and a success, though the stage has no retries


def test_a_duplicated_message_never_runs_a_stage_twice(stub_worker, stub_broker, monkeypatch):
    # Given a broker that delivers every message three times
    enqueue = stub_broker.enqueue

    def thrice(message, *, delay=None):
        for _ in range(2):
            enqueue(message, delay=delay)
        return enqueue(message, delay=delay)

    monkeypatch.setattr(stub_broker, "enqueue", thrice)
    # When a job with a fan-out runs
    done = wait_for_job(start_job(pipeline=items_pipeline.name, input={"values": [1, 2, 3]})["id"])
    # Then each item ran once and the job advanced once
    assert done["status"] == "completed"
    assert done["result"] == {"output": [10, 20, 30]}
    assert calls == {"counted:1": 1, "counted:2": 1, "counted:3": 1}
    assert done["stages"][1]["items"] == {"total": 3, "completed": 3, "failed": 0}


def test_a_late_message_for_a_finished_run_is_a_noop(stub_worker, stub_broker):
    done = wait_for_job(start_job(pipeline=items_pipeline.name, input={"values": [7]})["id"])
    with transaction() as session:
        run = session.scalars(select(StageRun).where(StageRun.job_id == done["id"], StageRun.item == 0)).one()
        options = {RUN_OPTION: run.id, TOKEN_OPTION: run.dispatch_token, JOB_OPTION: done["id"]}
    before = unacknowledged(stub_broker)
    stub_broker.enqueue(counted.message_with_options(args=(7,), **options))
    wait_until_settled(stub_broker, before)  # a worker has dealt with the late message
    assert calls == {"counted:7": 1}
    assert get_job(done["id"])["updated_at"] == done["updated_at"]


def test_cancel_stops_further_stages_and_late_work_is_discarded(stub_worker, stub_broker):
    before = unacknowledged(stub_broker)
    job = start_job(pipeline=sleepy.name, input={"values": [1, 2, 3]})
    assert napping.wait(20), "the first nap never started"
    canceled = cancel_job(job["id"])
    assert canceled["status"] == "canceled"
    wait_until_settled(stub_broker, before)  # the running nap finished and whatever it sent was dealt with
    final = get_job(job["id"])
    assert final["status"] == "canceled"
    assert "counted:1" not in calls
    # Nothing in the job's summary is left running or pending
    assert {s["status"] for s in final["stages"]} <= {"completed", "canceled"}
    assert final["stages"][-1]["status"] == "canceled"
    with transaction() as session:
        statuses = session.scalars(select(StageRun.status).where(StageRun.job_id == job["id"], StageRun.item >= 0))
        assert sorted(statuses) == ["canceled", "canceled", "canceled"]
    with pytest.raises(JobConflict):
        cancel_job(job["id"])


def test_retrying_a_failed_job_resumes_at_the_failed_stage_and_reuses_earlier_outputs(stub_worker):
    switches["flaky"] = True
    failed = wait_for_job(start_job(pipeline=resumable.name, input={"n": 4})["id"])
    assert failed["status"] == "failed" and failed["error"]["stage"] == "second"
    assert calls["counted:4"] == 1
    switches["flaky"] = False
    resumed = retry_job(failed["id"])
    assert resumed["status"] == "processing" and resumed["attempt"] == 2
    done = wait_for_job(failed["id"])
    assert done["status"] == "completed"
    assert done["result"] == {"ok": 40}
    assert calls["counted:4"] == 1  # the first stage was not run again


def test_retrying_a_fan_out_reruns_only_its_failed_items(stub_worker):
    switches["fail:2"] = True
    failed = wait_for_job(start_job(pipeline=items_pipeline.name, input={"values": [1, 2, 3]})["id"])
    assert failed["status"] == "failed"
    switches["fail:2"] = False
    retry_job(failed["id"])
    done = wait_for_job(failed["id"])
    assert done["status"] == "completed" and done["result"] == {"output": [10, 20, 30]}
    assert calls["counted:1"] == 1 and calls["counted:2"] == 2


def test_two_concurrent_retries_resume_the_job_once(stub_worker):
    switches["flaky"] = True
    failed = wait_for_job(start_job(pipeline=resumable.name, input={"n": 1})["id"])
    switches["flaky"] = False
    outcomes = []

    def retry():
        try:
            outcomes.append(retry_job(failed["id"])["status"])
        except JobConflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=retry) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["conflict", "processing"]
    assert wait_for_job(failed["id"])["status"] == "completed"


def test_only_failed_or_canceled_jobs_can_be_retried(stub_worker):
    done = wait_for_job(start_job(pipeline=items_pipeline.name, input={"values": [1]})["id"])
    with pytest.raises(JobConflict):
        retry_job(done["id"])


def test_an_external_wait_polls_later_without_spending_retries(stub_worker):
    job = start_job(pipeline="demo", input={"items": 1, "wait_seconds": 0.6})
    done = wait_for_job(job["id"])
    assert done["status"] == "completed"
    with transaction() as session:
        prepare = session.scalars(select(StageRun).where(StageRun.job_id == job["id"], StageRun.step == 0)).one()
        assert prepare.attempts == 1  # polled several times, one attempt spent
        assert prepare.waited > 0
        assert "started_at" in prepare.checkpoint


def test_the_reconciler_resends_a_run_whose_message_was_lost(stub_worker, stub_broker, monkeypatch):
    # Given a job whose first message never reached the broker
    stub_worker.pause()
    job = start_job(pipeline=retrying.name, input={"values": [5]})
    stub_broker.flush_all()
    before = unacknowledged(stub_broker)
    stub_worker.resume()
    wait_until_settled(stub_broker, before)
    assert get_job(job["id"])["status"] == "pending"
    # When the run is overdue and the reconciler passes (the stub broker cannot say what it holds)
    with transaction() as session:
        session.execute(update(StageRun).where(StageRun.job_id == job["id"])
                        .values(due_at=utcnow() - timedelta(seconds=120)))
    report = reconciler.reconcile_once()
    # Then the job completes
    assert report.lost_messages == 1
    assert wait_for_job(job["id"])["status"] == "completed"
    assert calls == {"flaky": 1}


def test_the_reconciler_reruns_a_stage_whose_lease_lapsed_and_ignores_the_old_message(stub_worker, stub_broker):
    # Given a run claimed by a worker that then vanished (lease lapsed, message gone)
    stub_worker.pause()
    job = start_job(pipeline=retrying.name, input={"n": 6})
    old = dramatiq.Message.decode(stub_broker.queues["default"].queue[0])
    stub_broker.flush_all()
    before = unacknowledged(stub_broker)
    with transaction() as session:
        session.execute(update(StageRun).where(StageRun.job_id == job["id"])
                        .values(status="processing", attempts=1, lease_until=utcnow() - timedelta(seconds=1)))
    # When the reconciler passes, and the broker later redelivers the old message too
    assert reconciler.reconcile_once().expired_leases == 1
    stub_broker.enqueue(old)
    stub_worker.resume()
    # Then the stage ran once more, and only once
    done = wait_for_job(job["id"])
    assert done["status"] == "completed"
    assert done["stages"][0]["attempts"] == 2
    wait_until_settled(stub_broker, before)  # the old message too was dealt with
    assert calls == {"flaky": 1}


def test_a_stopping_worker_starts_no_new_stage_and_the_reconciler_sends_it_on(stub_worker, stub_broker,
                                                                              monkeypatch):
    from dramatiq.middleware import SkipMessage

    from pipelines.engine.tracking import StageTracking

    tracking = next(m for m in stub_broker.middleware if isinstance(m, StageTracking))
    skipped = threading.Event()
    check = tracking.before_process_message

    def noting_skips(broker, message):
        try:
            return check(broker, message)
        except SkipMessage:
            skipped.set()
            raise

    # Not the broker's join: a message that an earlier test's stopped worker had fetched is never
    # acknowledged on the StubBroker, and would make the join wait forever.
    monkeypatch.setattr(tracking, "before_process_message", noting_skips)
    # Given a worker that has begun to shut down when a stage message reaches it
    stub_worker.pause()
    job = start_job(pipeline=retrying.name, input={"n": 2})
    tracking.before_worker_shutdown(stub_broker, stub_worker)
    try:
        stub_worker.resume()
        assert skipped.wait(20), "the stage message was not turned away"
        # Then it starts no stage (one would get no shutdown notification), and the run stays queued
        assert calls == {}
        with transaction() as session:
            assert session.scalars(select(StageRun.status).where(StageRun.job_id == job["id"])).one() == "queued"
    finally:
        tracking.after_worker_boot(stub_broker, stub_worker)
    # And once its message is overdue, the reconciler sends it to a worker that runs it
    with transaction() as session:
        session.execute(update(StageRun).where(StageRun.job_id == job["id"])
                        .values(due_at=utcnow() - timedelta(seconds=120)))
    assert reconciler.reconcile_once().lost_messages == 1
    assert wait_for_job(job["id"])["status"] == "completed"
    assert calls == {"flaky": 1}


def test_a_shutdown_notice_that_lands_while_a_finished_stage_is_recorded_loses_nothing(stub_worker, stub_broker,
                                                                                      monkeypatch):
    from dramatiq.middleware import ShutdownNotifications

    from pipelines.engine import machine as engine

    notices = next(m for m in stub_broker.middleware if isinstance(m, ShutdownNotifications))
    complete = engine.complete

    def complete_during_shutdown(*args, **kwargs):
        notices.manager.shutdown()  # SIGTERM arrives just as the stage's end is being recorded
        time.sleep(0.01)  # an interrupt would land here, in the thread recording it
        return complete(*args, **kwargs)

    monkeypatch.setattr(engine, "complete", complete_during_shutdown)
    done = wait_for_job(start_job(pipeline=retrying.name, input={"n": 3})["id"], timeout=10)
    assert done["status"] == "completed"
    assert calls == {"flaky": 1}


def test_a_stage_that_ends_while_the_database_is_unreachable_is_recorded_once_it_is_back(stub_worker, monkeypatch):
    from contextlib import contextmanager

    from sqlalchemy.exc import OperationalError

    from pipelines.engine import groupcommit, tracking

    real_transaction = tracking.transaction
    refusals = {"left": 3}

    @contextmanager
    def database_restarting():
        if refusals["left"]:  # the first attempts to record the stage's end find the database down
            refusals["left"] -= 1
            raise OperationalError("BEGIN", {}, ConnectionRefusedError("connection refused"))
        with real_transaction() as session:
            yield session

    monkeypatch.setattr(tracking, "transaction", database_restarting)
    monkeypatch.setattr(groupcommit, "transaction", database_restarting)
    done = wait_for_job(start_job(pipeline=retrying.name, input={"n": 4})["id"], timeout=10)
    # The end was recorded on a later try: the job completed without running the stage again
    assert done["status"] == "completed" and refusals["left"] == 0
    assert calls == {"flaky": 1}
    assert done["stages"][0]["attempts"] == 1
