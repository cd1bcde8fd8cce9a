"""Services the reliability tests break on purpose: a private Redis server, PostgreSQL restarts, raw messages.

The machine's own Redis (6379) is never stopped: tests that stop or restart Redis start a
``redis-server`` of their own on a free port and point this process's broker and the workers at it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dramatiq
import pytest
import redis
from dramatiq.message import Message

from tests.support.services import IN_CI
from tests.support.waiting import wait_until

#: An opt-in for restarting the machine's PostgreSQL outside CI (it disturbs everything else using it).
RESTART_POSTGRES_FLAG = "CONVEYOR_TEST_RESTART_POSTGRES"


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(reason + " (required under CI=true)")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A throw-away ``redis-server`` on 127.0.0.1 (no persistence: a restart loses every message)."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            _unavailable("redis-server is not installed")
        self.binary = binary or ""
        self.directory = directory
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        wait_until(lambda: self._pings(client), timeout=10, what=f"redis-server on port {self.port}")
        return self

    @staticmethod
    def _pings(client: redis.Redis) -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    def stop(self) -> None:
        """Kill the server: every message and connection is gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


@contextmanager
def broker_redis(url: str) -> Iterator[None]:
    """Point this process's broker (and its job notices) at the Redis server at ``url`` for a while."""
    client = dramatiq.get_broker().client  # type: ignore[attr-defined]
    original = client.connection_pool
    client.connection_pool = redis.ConnectionPool.from_url(url, socket_connect_timeout=1)
    try:
        yield
    finally:
        client.connection_pool.disconnect()
        client.connection_pool = original


def require_postgres_restart() -> None:
    """Skip unless this run may restart the machine's PostgreSQL (CI=true or CONVEYOR_TEST_RESTART_POSTGRES=1).

    Every other user of that server loses its connections too, so a developer opts in.
    """
    if not IN_CI and os.environ.get(RESTART_POSTGRES_FLAG) != "1":
        pytest.skip(f"restarts the machine's PostgreSQL: set {RESTART_POSTGRES_FLAG}=1 (or CI=true) to run")
    if shutil.which("pg_ctlcluster") is None or not Path("/etc/postgresql").is_dir():
        _unavailable("pg_ctlcluster is not available to restart PostgreSQL")


def restart_postgres() -> float:
    """Restart the machine's PostgreSQL cluster (``pg_ctlcluster``); returns the seconds it took."""
    require_postgres_restart()
    version = sorted(os.listdir("/etc/postgresql"))[0]
    started = time.monotonic()
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"], check=True,
                   capture_output=True, timeout=60)
    return time.monotonic() - started


# --- raw messages ---------------------------------------------------------------------------------------


def queue_keys(queue: str = "default", namespace: str = "dramatiq") -> dict[str, str]:
    """Dramatiq's Redis keys of ``queue``: the list of ids, the message bodies, the dead letters."""
    return {"queue": f"{namespace}:{queue}", "messages": f"{namespace}:{queue}.msgs",
            "dead": f"{namespace}:{queue}.XQ", "dead_messages": f"{namespace}:{queue}.XQ.msgs"}


def push_raw(client: redis.Redis, message_id: str, body: bytes, queue: str = "default") -> None:
    """Put ``body`` on ``queue`` exactly as Dramatiq's enqueue script would, and ring its doorbell."""
    keys = queue_keys(queue)
    pipe = client.pipeline()
    pipe.hset(keys["messages"], message_id, body)
    pipe.rpush(keys["queue"], message_id)
    pipe.lpush(f"dramatiq:{queue}.doorbell", 1)
    pipe.execute()


def stored_body(client: redis.Redis, redis_id: str, queue: str = "default") -> bytes:
    """The stored body of message ``redis_id`` (kept until the message is acknowledged)."""
    body = client.hget(queue_keys(queue)["messages"], redis_id)
    assert body is not None, f"no message {redis_id} on {queue}"
    assert isinstance(body, bytes), "the client is made without decode_responses, so it answers bytes"
    return body


def resend(client: redis.Redis, body: bytes, new_id: str, queue: str = "default") -> Message:
    """Enqueue another copy of a message's ``body``: the same message (id, options) under a new Redis id."""
    copy = Message.decode(body).copy(options={"redis_message_id": new_id, "message_key": new_id})
    push_raw(client, new_id, copy.encode(), queue)
    return copy


def duplicate(client: redis.Redis, redis_id: str, new_id: str, queue: str = "default") -> Message:
    """Enqueue a second copy of the stored message ``redis_id``."""
    return resend(client, stored_body(client, redis_id, queue), new_id, queue)
