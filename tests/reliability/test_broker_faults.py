"""Broker faults: poison messages, Redis down at submission, Redis flushed or restarted mid-job."""

from __future__ import annotations

import uuid

import redis
from dramatiq.message import Message

from pipelines.jobs import start_job
from tests.reliability.conftest import REDIS_URL
from tests.reliability.invariant import assert_invariant, executions
from tests.reliability.services import push_raw, queue_keys
from tests.support import wait_for_job


def test_undecodable_and_unknown_actor_messages_never_run_and_the_worker_keeps_serving(start_worker, measure):
    client = redis.Redis.from_url(REDIS_URL)
    keys = queue_keys()
    # Given an undecodable message and one for an actor nobody declared, queued ahead of a job's first stage
    junk_id, unknown_id = f"junk-{uuid.uuid4()}", f"unknown-{uuid.uuid4()}"
    push_raw(client, junk_id, b"\x00\xffnot a message")
    unknown = Message(queue_name="default", actor_name="rel_no_such_actor", args=({"x": 1},), kwargs={},
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
