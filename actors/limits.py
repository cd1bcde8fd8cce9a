"""Caps on concurrent calls to each provider, shared by every worker of the deployment.

Cloud providers allow a few requests at a time per account; going over earns 429s. A stage
wraps its provider calls in :func:`provider_slot`; when all slots are taken it raises
:class:`~actors.errors.RateLimited` with a short ``retry_after``, so the engine re-schedules the
stage after that delay without spending one of its retries and without holding a worker thread.

Slots are Dramatiq's :class:`~dramatiq.rate_limits.ConcurrentRateLimiter` counters, kept in the
broker's Redis (so all processes and machines share them), or in process memory with a
StubBroker. The cap is ``CONVEYOR_LIMIT_<PROVIDER>`` (default :data:`DEFAULT_LIMIT`; 0 means
no cap).

Hold a slot around the HTTP calls themselves, not while waiting for a poll: a stage that calls
``ctx.poll_later`` inside the block gives its slot back as the exception leaves it.

Caveat of the counter: a worker killed while holding a slot cannot give it back, and the counter
only expires after :data:`SLOT_TTL` without any use of that provider, so under steady traffic a
killed holder costs one slot until a quiet spell.
"""

from __future__ import annotations

import random
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.rate_limits import ConcurrentRateLimiter, RateLimiterBackend
from dramatiq.rate_limits.backends import RedisBackend, StubBackend

from actors.broker.build import current_broker, redis_client
from actors.errors import RateLimited
from conveyor.config import settings

#: Concurrent calls per provider when ``CONVEYOR_LIMIT_<PROVIDER>`` is unset.
DEFAULT_LIMIT = 4
#: s; a slot counter untouched this long expires (bounds the cost of a killed holder).
SLOT_TTL = 600.0
#: s; the base wait before a stage that found no free slot runs again (plus up to as much jitter).
RETRY_AFTER = 1.0
#: The prefix of the counters' keys in Redis.
KEY_PREFIX = "conveyor:provider-slots:"

_backends: weakref.WeakKeyDictionary[dramatiq.Broker, RateLimiterBackend] = weakref.WeakKeyDictionary()
_backends_lock = threading.Lock()


def limit_for(provider: str) -> int:
    """The configured cap on concurrent calls to ``provider`` (0: no cap)."""
    return int(settings().limits.get(provider.lower(), DEFAULT_LIMIT))


def backend_for(broker: dramatiq.Broker) -> RateLimiterBackend:
    """The rate-limit backend beside ``broker``: its Redis, or process memory for a StubBroker."""
    with _backends_lock:
        backend = _backends.get(broker)
        if backend is None:
            client = None if isinstance(broker, StubBroker) else redis_client(broker)
            backend = RedisBackend(client=client) if client is not None else StubBackend()
            _backends[broker] = backend
        return backend


@contextmanager
def provider_slot(
    provider: str, *, broker: dramatiq.Broker | None = None, ttl: float = SLOT_TTL
) -> Iterator[None]:
    """Hold one of ``provider``'s concurrent-call slots for the duration of the block.

    Parameters:
      provider: the provider's name, e.g. ``"luma"`` (its cap is ``CONVEYOR_LIMIT_LUMA``).
      broker: whose backend keeps the counters (default: the current Dramatiq broker).
      ttl: seconds a counter lives without being touched.

    Raises:
      RateLimited: when every slot is taken; ``retry_after`` is a second or two, with jitter.
    """
    limit = limit_for(provider)
    if limit <= 0:
        yield
        return
    limiter = ConcurrentRateLimiter(
        backend_for(broker or current_broker()),
        KEY_PREFIX + provider.lower(),
        limit=limit,
        ttl=int(ttl * 1000),
    )
    with limiter.acquire(raise_on_failure=False) as acquired:
        if not acquired:
            raise RateLimited(
                f"all {limit} concurrent {provider} calls are in use; trying again shortly",
                retry_after=RETRY_AFTER * (1 + random.random()),
            )
        yield
