"""Broker faults: poison messages, Redis down at submission, Redis flushed or restarted mid-job."""

from __future__ import annotations

import re
import time
import uuid

import redis
from dramatiq.message import Message

from pipelines.services.jobs import start_job
from tests.reliability.fault_injection import broker_redis, push_raw, queue_keys
from tests.reliability.invariant import assert_invariant, executions, stage_runs
from tests.support.jobs import wait_for_job
from tests.support.services import RELIABILITY_REDIS_URL
from tests.support.waiting import wait_until

#: One message at a time per worker process: the next one waits in Redis, where a flush or restart loses it.
ONE_AT_A_TIME = {"dramatiq_queue_prefetch": "1"}
#: What a worker's reconciler logs when it sent lost messages again.
LOST_AND_RESENT = re.compile(r"Reconciler: .* [1-9]\d* lost message\(s\) re-sent")


def test_undecodable_and_unknown_actor_messages_never_run_and_the_worker_keeps_serving(start_worker, measure):
    client = redis.Redis.from_url(RELIABILITY_REDIS_URL)
    keys = queue_keys()
    # Given an undecodable message and one for an actor nobody declared, queued ahead of a job's first stage
    junk_id, unknown_id = f"junk-{uuid.uuid4()}", f"unknown-{uuid.uuid4()}"
    push_raw(client, junk_id, b"\x00\xffnot a message")
    unknown: Message[object] = Message(queue_name="default", actor_name="rel_no_such_actor", args=({"x": 1},), kwargs={},
                      options={"redis_message_id": unknown_id})
    push_raw(client, unknown_id, unknown.encode())
    job = start_job(pipeline="rel_chain", input={"tag": "after poison"})["id"]
    # When a worker fetches them all at once
    worker = start_worker("w")
    # Then the job completes
    assert_invariant(wait_for_job(job, timeout=20)["id"], status="completed")
    # And neither poison message ran: both are dead-lettered, nothing of theirs is left queued or held
    dead = client.hkeys(keys["dead_messages"])
    assert junk_id.encode() in dead and unknown_id.encode() in dead
    assert client.hget(keys["dead_messages"], junk_id) == b"\x00\xffnot a message"
    assert not client.hexists(keys["messages"], junk_id) and not client.hexists(keys["messages"], unknown_id)
    assert all(not client.sismember(k, junk_id) for k in client.keys("dramatiq:__acks__.*"))
    log = worker.output()
    assert log.count(junk_id) == 1, log
    assert "rel_no_such_actor" in log
    # And the worker goes on serving
    again = start_job(pipeline="rel_chain", input={"tag": "later"})["id"]
    assert_invariant(wait_for_job(again, timeout=20)["id"], status="completed")
    assert worker.process.poll() is None
    assert not [r for r in executions(job) if r["event"] == "skipped"]


def test_a_job_submitted_while_redis_is_down_is_kept_and_enqueued_once_redis_is_back(
        start_worker, private_redis, measure):
    start_worker("w", env={"REDIS_URL": private_redis.url})
    with broker_redis(private_redis.url):
        # Given Redis is down
        private_redis.stop()
        # When a job is submitted
        submitted = time.monotonic()
        job = start_job(pipeline="rel_chain", input={"tag": "redis down"})
        measure("Redis down: start_job returned after", time.monotonic() - submitted)
        # Then it is accepted and kept: the job row and its first run, queued, are in the job store
        assert job["status"] == "pending"
        (first,) = stage_runs(job["id"])
        assert first.status == "queued" and first.dispatch_token
        # When Redis comes back, empty
        private_redis.start()
        back = time.monotonic()
        # Then the reconciler sends the first stage once, and the job completes
        assert_invariant(wait_for_job(job["id"], timeout=40)["id"], status="completed")
        measure("Redis down: the job completed after Redis came back", time.monotonic() - back)
    assert [r["stage"] for r in executions(job["id"], "start")] == ["begin", "hold", "end"]


def test_a_job_completes_when_redis_is_flushed_mid_job(start_worker, measure):
    # Given a capped fan-out with items done, one running, and one queued in Redis behind it
    worker = start_worker("w", threads=1, env=ONE_AT_A_TIME)
    job = start_job(pipeline="rel_fanout", input={"items": 6, "sleep": 0.6})["id"]
    client = redis.Redis.from_url(RELIABILITY_REDIS_URL)
    # (an item's message waiting in Redis, not yet fetched: the running item holds the one prefetch slot)
    wait_until(lambda: executions(job, "done")[1:] and client.llen("dramatiq:default"), timeout=30,
               what="an item to complete and the next one to wait in Redis")
    # When every message in Redis is lost
    client.flushdb()
    flushed = time.monotonic()
    # Then the reconciler sends the lost work again, and the job completes with no item completed twice
    done = assert_invariant(wait_for_job(job, timeout=60)["id"], status="completed")
    measure("Redis flushed: the job completed after", time.monotonic() - flushed)
    assert [i["square"] for i in done["result"]["final"]] == [i * i for i in range(6)]
    assert LOST_AND_RESENT.search(worker.output()), "the flush lost no message: nothing was tested"


def test_a_job_completes_when_redis_restarts_mid_job(start_worker, private_redis, measure):
    with broker_redis(private_redis.url):
        # Given a capped fan-out with items done, running and still waiting, on a worker of our own Redis
        worker = start_worker("w", threads=1, env={"REDIS_URL": private_redis.url, **ONE_AT_A_TIME})
        job = start_job(pipeline="rel_fanout", input={"items": 6, "sleep": 0.6})["id"]
        wait_until(lambda: executions(job, "done")[1:], timeout=30, what="an item to complete")
        # When Redis goes away for a second and comes back empty
        private_redis.stop()
        time.sleep(1)
        private_redis.start()
        restarted = time.monotonic()
        # Then every job is recovered: this one completes, no item completed twice
        done = assert_invariant(wait_for_job(job, timeout=60)["id"], status="completed")
        measure("Redis restarted: the job completed after", time.monotonic() - restarted)
    assert [i["square"] for i in done["result"]["final"]] == [i * i for i in range(6)]
    assert LOST_AND_RESENT.search(worker.output()), "the restart lost no message: nothing was tested"
