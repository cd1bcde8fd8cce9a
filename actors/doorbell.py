"""A Redis broker whose idle consumers wake the moment a message is enqueued.

Dramatiq's Redis consumer polls an empty queue with a growing sleep of up to its
``worker_timeout`` (1 s by default), so a pipeline's next stage waits on average half
that before it starts. Here every enqueue also pushes a token on a per-queue "doorbell"
list, and an idle consumer blocks on that list (BLPOP) instead of sleeping: hand-off
latency drops to a few milliseconds at no idle cost. The doorbell is only a hint —
messages themselves still live in Dramatiq's own structures, so a lost token only
costs the old wait.
"""

from __future__ import annotations

import time

from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.message import Message

#: How many unconsumed tokens a doorbell keeps; bounds the wake-ups of idle consumers.
DOORBELL_DEPTH = 8
#: s; how long a consumer that has no free prefetch slot sleeps before looking again.
BUSY_SLEEP = 0.005


class DoorbellRedisBroker(RedisBroker):
    """:class:`RedisBroker` that rings a per-queue doorbell on enqueue."""

    def doorbell_key(self, queue_name: str) -> str:
        return f"{self.namespace}:{queue_name}.doorbell"

    def enqueue(self, message: Message, *, delay: int | None = None) -> Message:
        enqueued = super().enqueue(message, delay=delay)
        key = self.doorbell_key(enqueued.queue_name)
        self.client.pipeline(transaction=False).lpush(key, 1).ltrim(key, 0, DOORBELL_DEPTH - 1).execute()
        return enqueued

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> _DoorbellConsumer:
        return _DoorbellConsumer(self, queue_name, prefetch, timeout)

    def wait_for_doorbell(self, queue_name: str, timeout_ms: int) -> None:
        self.client.blpop([self.doorbell_key(queue_name)], timeout=max(0.01, timeout_ms / 1000))

    def message_is_live(self, queue_name: str, redis_message_id: str) -> bool:
        """Whether a message is still queued, delayed or being worked on (not acked or lost)."""
        return bool(self.client.hexists(f"{self.namespace}:{queue_name}.msgs", redis_message_id))


class _DoorbellConsumer(_RedisConsumer):
    def __init__(self, broker: DoorbellRedisBroker, queue_name: str, prefetch: int, timeout: int) -> None:
        # A zero timeout turns the parent's idle sleep into a no-op; we wait on the doorbell instead.
        super().__init__(broker, queue_name, prefetch, 0)
        self.idle_timeout = timeout

    def __next__(self):
        message = super().__next__()
        if message is None:
            if self.outstanding_message_count < self.prefetch:
                self.broker.wait_for_doorbell(self.queue_name, self.idle_timeout)
            else:
                time.sleep(BUSY_SLEEP)
        return message
