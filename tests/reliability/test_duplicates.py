"""Duplicates: one stage message delivered twice at once, one failed job retried by several callers at once."""

from __future__ import annotations

import threading
import uuid

import redis

from conveyor.errors import JobConflict
from pipelines.services.jobs import retry_job, start_job
from tests.reliability.fault_injection import duplicate, queue_keys
from tests.reliability.faulty import CREATE_PATH
from tests.reliability.invariant import assert_invariant, dispatch_token, executions, stage_runs
from tests.support.jobs import wait_for_job
from tests.support.services import RELIABILITY_REDIS_URL

#: One message at a time per worker process, so each of two workers takes one copy.
ONE_AT_A_TIME = {"dramatiq_queue_prefetch": "1"}


def test_a_stage_message_delivered_twice_at_once_runs_once_and_calls_the_provider_once(start_worker, provider):
    client = redis.Redis.from_url(RELIABILITY_REDIS_URL)
    emulator = provider(done_after_polls=4)
    # Given two idle one-thread workers that each take one message at a time
    first = start_worker("a", threads=1, env=ONE_AT_A_TIME, wait=False)
    second = start_worker("b", threads=1, env=ONE_AT_A_TIME, wait=False)
    first.wait_ready()
    second.wait_ready()
    # When a job's paid stage message is sent, and a second copy of it right after
    job = start_job(pipeline="rel_provider", input={"poll_interval": 0.3})["id"]
    token = dispatch_token(stage_runs(job)[0])
    copy_id = f"copy-{uuid.uuid4()}"
    duplicate(client, token, copy_id)
    # Then the job completes after exactly one provider job was paid for
    assert_invariant(wait_for_job(job, timeout=30)["id"], status="completed")
    assert len(emulator.calls_to(CREATE_PATH, "POST")) == 1
    # And each worker received one copy: one ran the stage, the other skipped its copy while the stage ran
    ran = [r for r in executions(job) if r.get("stage") == "render"]
    skipped = executions(job, "skipped")
    assert [r["event"] for r in ran] == ["start", "done"]
    assert len(skipped) == 1 and skipped[0]["token"] == token
    assert skipped[0]["pid"] != ran[0]["pid"]
    assert skipped[0]["ts"] < ran[1]["ts"], "the copy was only delivered after the stage had finished"
    # And neither copy is left in Redis
    messages = queue_keys()["messages"]
    assert not client.hexists(messages, token) and not client.hexists(messages, copy_id)


def test_concurrent_retries_of_one_failed_job_resume_it_once(start_worker, scratch):
    # Given a job that failed in its middle stage, after its first stage completed
    flag = scratch / "fail"
    flag.touch()
    worker = start_worker("w", threads=4)
    job = start_job(pipeline="rel_chain", input={"fail_while": str(flag), "tag": "retried"})["id"]
    failed = wait_for_job(job, timeout=20)
    assert failed["status"] == "failed" and failed["error"]["code"] == "told_to_fail"
    flag.unlink()
    # When four callers retry it at the same moment
    barrier = threading.Barrier(4)
    outcomes: list[str] = []

    def retry() -> None:
        barrier.wait()
        try:
            outcomes.append(retry_job(job)["status"])
        except JobConflict:
            outcomes.append("conflict")

    callers = [threading.Thread(target=retry) for _ in range(4)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(timeout=30)
    # Then exactly one resumes it; the others are told the job is no longer failed
    assert sorted(outcomes) == ["conflict", "conflict", "conflict", "processing"]
    done = assert_invariant(wait_for_job(job, timeout=20)["id"], status="completed")
    assert done["attempt"] == 2
    # And the resumed job reran only the failed stage, once
    starts = [(r["stage"], r["attempt"]) for r in executions(job, "start")]
    assert starts == [("begin", 1), ("hold", 1), ("hold", 1), ("end", 1)]
    assert worker.process.poll() is None
