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

import logging
import threading
import time
from collections.abc import Callable
from uuid import uuid4

import dramatiq
import redis
from dramatiq.broker import MessageProxy
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.common import current_millis, dq_name
from dramatiq.errors import ConnectionClosed, DecodeError
from dramatiq.message import Message

logger = logging.getLogger(__name__)

#: How many unconsumed tokens a doorbell keeps; bounds the wake-ups of idle consumers.
DOORBELL_DEPTH = 8
#: s; how long a consumer that has no free prefetch slot sleeps before looking again.
BUSY_SLEEP = 0.005
#: ms without a heartbeat after which a worker counts as gone, and the messages it fetched as lost.
#: A running worker beats at every fetch (at least once per idle wait, about a second).
WORKER_SILENCE = 10_000
#: s; how often a draining consumer, which fetches nothing, still tells Redis its worker lives.
DRAINING_BEAT = 1.0


class DoorbellRedisBroker(RedisBroker):
    """:class:`RedisBroker` that rings a per-queue doorbell on enqueue."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        #: Set while this process's worker shuts down: its consumers stop fetching (see :class:`_Draining`).
        self.draining = threading.Event()
        self.add_middleware(_Draining(self.draining))
        #: Called in the consumer thread with the messages of each fetch from a (non-delay) queue, before
        #: any is handed to a worker thread: the engine claims their stage runs together there.
        self.on_fetch: Callable[[list[Message]], None] | None = None
        #: Called with fetched messages that go back to the broker unstarted (a stopping worker).
        self.on_requeue: Callable[[list[Message]], None] | None = None

    def doorbell_key(self, queue_name: str) -> str:
        return f"{self.namespace}:{queue_name}.doorbell"

    def enqueue(self, message: Message, *, delay: int | None = None) -> Message:
        """Enqueue as :class:`RedisBroker` does, then ring the queue's doorbell (two round trips; batches
        use :meth:`enqueue_into` and :meth:`ring_into`).

        A message that carries ``message_key`` in its options is stored under that key instead
        of a random one, so its sender can later ask whether it is still live
        (:meth:`message_is_live`). Senders must use a fresh key for every enqueue.
        """
        message = self._to_store(message, delay)
        self.emit_before("enqueue", message, delay)
        self.do_enqueue(message.queue_name, message.options["redis_message_id"], message.encode())
        self.emit_after("enqueue", message, delay)
        pipe = self.client.pipeline(transaction=False)
        self.ring_into(pipe, {message.queue_name})
        pipe.execute()
        return message

    @staticmethod
    def _to_store(message: Message, delay: int | None) -> Message:
        """The message as stored: under its ``message_key`` (or a random id), on the delay queue if delayed."""
        message = message.copy(options={"redis_message_id": message.options.get("message_key") or str(uuid4())})
        if delay is not None:
            message = message.copy(queue_name=dq_name(message.queue_name), options={"eta": current_millis() + delay})
        return message

    def enqueue_into(self, pipe: redis.client.Pipeline, message: Message, *, delay: int | None = None) -> Message:
        """As :meth:`enqueue`, but the enqueue is added to ``pipe``, which the caller executes after adding
        the doorbell rings (:meth:`ring_into`): many messages then cost one round trip. The enqueue's reply
        is at index ``len(pipe)`` as it was before this call; if it is an error (``NOSCRIPT`` after a Redis
        restart), send the message again with :meth:`enqueue`.
        """
        message = self._to_store(message, delay)
        self.emit_before("enqueue", message, delay)
        # Dramatiq's own enqueue script, by its hash: calling the Script object would add a SCRIPT EXISTS
        # round trip to every pipeline.
        pipe.evalsha(self.scripts["dispatch"].sha, 1, self.namespace, "enqueue", current_millis(), message.queue_name,
                     self.broker_id, self.heartbeat_timeout, self.dead_message_ttl,
                     self._should_do_maintenance("enqueue"), self._max_unpack_size(),
                     message.options["redis_message_id"], message.encode())
        return message

    def ring_into(self, pipe: redis.client.Pipeline, queue_names: set[str]) -> None:
        """Ring each queue's doorbell once: one consumer woken per batch fetches up to its prefetch, and
        wakes no others for messages it has already taken."""
        for queue_name in sorted(queue_names):
            key = self.doorbell_key(queue_name)
            pipe.lpush(key, 1)
            pipe.ltrim(key, 0, DOORBELL_DEPTH - 1)

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> _DoorbellConsumer:
        return _DoorbellConsumer(self, queue_name, prefetch, timeout)

    def wait_for_doorbell(self, queue_name: str, timeout_ms: int) -> None:
        self.client.blpop([self.doorbell_key(queue_name)], timeout=max(0.01, timeout_ms / 1000))

    def message_is_live(self, queue_name: str, message_key: str) -> bool:
        """Whether the message stored under ``message_key`` is still queued, delayed or held by a live worker.

        A fetched message stays stored until it is acknowledged. If the worker that fetched it
        died (SIGKILL), it would count as live until Dramatiq's own clean-up gives it back, which
        waits out a 60 s heartbeat timeout and then a maintenance pass run at random, often
        minutes later: a message held only by workers silent for :data:`WORKER_SILENCE` is lost.
        """
        queues = (queue_name, dq_name(queue_name))
        pipe = self.client.pipeline(transaction=False)
        for queue in queues:
            pipe.hexists(f"{self.namespace}:{queue}.msgs", message_key)
        pipe.zrange(f"{self.namespace}:__heartbeats__", 0, -1, withscores=True)
        *stored, beats = pipe.execute()
        if not any(stored):
            return False
        pipe = self.client.pipeline(transaction=False)
        for worker, _ in beats:
            for queue in queues:
                pipe.sismember(f"{self.namespace}:__acks__.{_text(worker)}.{queue}", message_key)
        held = pipe.execute()
        holders = [beat for i, (_, beat) in enumerate(beats) if any(held[2 * i:2 * i + 2])]
        # Held by nobody: it waits in its queue. Held: live while one holder still beats.
        return not holders or any(current_millis() - beat < WORKER_SILENCE for beat in holders)


class _DoorbellConsumer(_RedisConsumer):
    def __init__(self, broker: DoorbellRedisBroker, queue_name: str, prefetch: int, timeout: int) -> None:
        # A zero timeout turns the parent's idle sleep into a no-op; we wait on the doorbell instead.
        super().__init__(broker, queue_name, prefetch, 0)
        self.idle_timeout = timeout
        self.last_draining_beat = 0.0
        self.is_delay_queue = queue_name == dq_name(queue_name.removesuffix(".DQ"))
        #: Fetched and decoded, not yet handed to the worker.
        self.decoded: list[Message] = []

    @property
    def outstanding_message_count(self) -> int:
        return len(self.queued_message_ids) + len(self.message_cache) + len(self.decoded)

    def __next__(self):
        if self.broker.draining.is_set():
            return self._idle_while_draining()
        if not self.decoded:
            self._fetch()
        if not self.decoded:
            return None
        message = self.decoded.pop(0)
        self.misses = 0
        self.queued_message_ids.add(message.message_id)
        return MessageProxy(message)

    def _fetch(self) -> None:
        """Fetch what there is room for into ``decoded`` (its stage runs claimed), or wait for the doorbell."""
        # Whether this call may fetch: decided before it, because worker threads acknowledge (and so
        # free prefetch slots) concurrently. A consumer that was full must look again, not wait on a
        # doorbell that nobody may ring.
        room = self.prefetch - self.outstanding_message_count
        if room <= 0:
            time.sleep(BUSY_SLEEP)
            return
        try:
            fetched = self.broker.do_fetch(self.queue_name, room)
        except redis.ConnectionError as error:
            raise ConnectionClosed(error) from None
        if not fetched:
            self.broker.wait_for_doorbell(self.queue_name, self.idle_timeout)
            return
        for data in fetched:
            if data is None:
                continue
            try:
                self.decoded.append(Message.decode(data))
            except DecodeError as exc:
                # Dramatiq's consumer would die on it and restart, stranding the rest of its fetch
                # unacknowledged (and counted live) until the worker exits; set it aside instead.
                try:
                    self._dead_letter(exc.data)
                except redis.ConnectionError as error:
                    raise ConnectionClosed(error) from None
        if self.decoded and self.broker.on_fetch is not None and not self.is_delay_queue:
            self.broker.on_fetch(list(self.decoded))

    def requeue(self, messages) -> None:
        messages = list(messages)
        if messages and self.broker.on_requeue is not None:
            self.broker.on_requeue(messages)
        super().requeue(messages)

    def close(self) -> None:
        # Messages fetched but never handed to the worker go back now, not after Redis's own timeout.
        leftover, self.decoded = self.decoded, []
        try:
            self.requeue(leftover)
        finally:
            super().close()

    def _idle_while_draining(self) -> None:
        # Fetch nothing, so a stopping worker's idle threads take no new work; keep the heartbeat,
        # since the messages of the stages still finishing here are alive.
        now = time.monotonic()
        if now - self.last_draining_beat >= DRAINING_BEAT:
            self.last_draining_beat = now
            broker = self.broker
            broker.client.zadd(f"{broker.namespace}:__heartbeats__", {broker.broker_id: current_millis()})
        time.sleep(BUSY_SLEEP * 10)
        return None

    def _dead_letter(self, data: bytes) -> None:
        """Move an undecodable message we fetched to the queue's dead letters, as a failed one would go."""
        broker = self.broker
        acks = f"{broker.namespace}:__acks__.{broker.broker_id}.{self.queue_name}"
        held = list(broker.client.smembers(acks))
        bodies = broker.client.hmget(f"{broker.namespace}:{self.queue_name}.msgs", held) if held else []
        message_id = next((_text(mid) for mid, body in zip(held, bodies, strict=True) if body == data), None)
        if message_id is None:
            logger.error("Dropped an undecodable message on queue %r", self.queue_name)
            return
        broker.do_nack(self.queue_name, message_id)
        logger.error("Dead-lettered undecodable message %s on queue %r", message_id, self.queue_name)


class _Draining(dramatiq.Middleware):
    """Stops a worker's consumers fetching once it begins to shut down.

    Dramatiq keeps consumers fetching while the worker threads finish, and an idle thread may
    still take a fetched message before it exits. The stage it starts then gets no shutdown
    notification and holds the stopping process until the shutdown timeout: a stage handed back
    by this worker (re-queued by another worker's reconciler) could come straight back here.
    """

    def __init__(self, draining: threading.Event) -> None:
        self.draining = draining

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.draining.clear()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.draining.set()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
