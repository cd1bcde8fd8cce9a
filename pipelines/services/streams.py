"""Job notices for many open event streams over one Redis connection per process.

One Redis pub/sub connection per subscriber would not scale: a web process holding hundreds of
event streams would need as many connections (redis-py's pool stops at 100 by default). Here one listener per process owns a single pub/sub connection,
subscribes to a job's channel while at least one stream follows the job, and hands each notice
to every stream's inbox. Under gunicorn's gevent worker the listener is a greenlet and inboxes
are cooperative queues. Without Redis (unit tests' StubBroker) this defers to
:func:`pipelines.engine.notices.subscribe_local`.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from actors.broker.build import current_broker, redis_client
from pipelines.engine import notices

logger = logging.getLogger(__name__)

#: s the listener waits for a message before applying new (un)subscriptions.
POLL = 0.05
#: s a new stream waits for its channel subscription to be confirmed.
SUBSCRIBE_TIMEOUT = 5.0
#: s between reconnection attempts after the Redis connection broke.
RECONNECT_DELAY = 1.0


class NoticeHub:
    """One pub/sub connection fanning job notices out to in-process inboxes."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.lock = threading.Lock()
        self.inboxes: dict[str, set[queue.Queue[dict]]] = {}
        self.changes: list[tuple[str, str, threading.Event]] = []  #: ("subscribe" | "unsubscribe", channel, done)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="conveyor-notice-hub", daemon=True)
        self.thread.start()

    def add(self, channel: str) -> queue.Queue[dict]:
        """A new inbox for ``channel``, returned once the channel is subscribed."""
        inbox: queue.Queue[dict] = queue.Queue()
        done = threading.Event()
        with self.lock:
            first = channel not in self.inboxes
            self.inboxes.setdefault(channel, set()).add(inbox)
            if first:
                self.changes.append(("subscribe", channel, done))
            else:
                done.set()
        if not done.wait(SUBSCRIBE_TIMEOUT):
            logger.warning("Subscribing to %s took over %s s; notices may be late", channel, SUBSCRIBE_TIMEOUT)
        return inbox

    def remove(self, channel: str, inbox: queue.Queue[dict]) -> None:
        with self.lock:
            members = self.inboxes.get(channel)
            if members is None:
                return
            members.discard(inbox)
            if not members:
                del self.inboxes[channel]
                self.changes.append(("unsubscribe", channel, threading.Event()))

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)

    def _run(self) -> None:
        while not self.stopped.is_set():
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                self._listen(pubsub)
            except Exception:
                logger.warning("Job notice connection lost; reconnecting", exc_info=True)
                time.sleep(RECONNECT_DELAY)
                with self.lock:  # subscribe again to every followed channel on the new connection
                    self.changes = [("subscribe", c, threading.Event()) for c in self.inboxes] + [
                        change for change in self.changes if change[0] == "subscribe"]
            finally:
                try:
                    pubsub.close()
                except Exception:
                    pass

    def _listen(self, pubsub: Any) -> None:
        while not self.stopped.is_set():
            with self.lock:
                changes, self.changes = self.changes, []
            subscribe = sorted({c for kind, c, _ in changes if kind == "subscribe"})
            unsubscribe = sorted({c for kind, c, _ in changes if kind == "unsubscribe"} - set(subscribe))
            if subscribe:
                pubsub.subscribe(*subscribe)
            if unsubscribe:
                pubsub.unsubscribe(*unsubscribe)
            for _, _, done in changes:
                done.set()
            if not pubsub.subscribed:
                time.sleep(POLL)
                continue
            message = pubsub.get_message(timeout=POLL)
            if message is None or message.get("type") != "message":
                continue
            channel = message["channel"]
            channel = channel.decode() if isinstance(channel, bytes) else str(channel)
            try:
                notice = json.loads(message["data"])
            except (TypeError, ValueError):
                continue
            notice["received_at"] = time.monotonic()
            with self.lock:
                inboxes = list(self.inboxes.get(channel, ()))
            for inbox in inboxes:
                inbox.put(notice)


_hubs: dict[tuple[int, int], NoticeHub] = {}
_hubs_lock = threading.Lock()


def hub_for(client: Any) -> NoticeHub:
    """This process's hub for ``client`` (a new one after a fork)."""
    key = (os.getpid(), id(client))
    with _hubs_lock:
        hub = _hubs.get(key)
        if hub is None or not hub.thread.is_alive():
            hub = _hubs[key] = NoticeHub(client)
        return hub


@contextmanager
def subscribe(job_id: str, *, timeout: float = 15.0) -> Iterator[Iterator[dict | None]]:
    """Notices for ``job_id``, and None after each ``timeout`` s of silence.

    A notice from Redis carries ``received_at`` (``time.monotonic()`` when this process got it).
    """
    client = redis_client(current_broker())
    if client is None:
        with notices.subscribe_local(job_id, timeout=timeout) as local:
            yield local
        return
    hub = hub_for(client)
    channel = notices.channel(job_id)
    inbox = hub.add(channel)
    try:
        yield notices.inbox_notices(inbox, timeout)
    finally:
        hub.remove(channel, inbox)
