"""`conveyor dev` in a child process, for scripts/screenshot_dashboard.py and the dashboard tests.

It needs neither pytest nor the test database: a script, which the tests borrow.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
#: The first-run sign-in link `conveyor dev` prints, with the token in its fragment.
_SIGN_IN = re.compile(r"(http://\S+/#token=(\S+))")


class DevServerFailed(RuntimeError):
    """Raised when `conveyor dev` exits or does not serve in time; the message carries its log."""


@dataclass
class DevServer:
    url: str
    token: str
    sign_in_link: str
    env: dict[str, str]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def isolated_env(var_dir: Path, **extra: str) -> dict[str, str]:
    """This process's environment for a child Conveyor that keeps all its state under ``var_dir``.

    Conveyor's own settings are left out, so the child uses its defaults (SQLite, embedded Redis)
    rather than whatever this process was configured with.
    """
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CONVEYOR_") and k not in ("DATABASE_URL", "REDIS_URL", "STORAGE_URL")}
    env.update(CONVEYOR_VAR_DIR=str(var_dir), PYTHONPATH=str(ROOT), **extra)
    return env


def healthy(url: str) -> bool:
    """Whether the server at ``url`` answers ``/healthz`` with 200 now."""
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def stop_embedded_redis(var_dir: Path) -> None:
    """Shut down an embedded Redis server a subprocess left under ``var_dir`` (it may outlive its parent).

    Asked politely first; a server still running under ``var_dir`` afterwards (one started again by a
    process that was exiting) is killed, so no test leaves a server behind.
    """
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    socket_path = var_dir / "redis.sock"
    if socket_path.exists():
        try:
            # No retries: the server closing the connection is the answer (redis-py would retry for seconds)
            redis.Redis(unix_socket_path=str(socket_path), socket_timeout=5,
                        retry=Retry(NoBackoff(), 0)).shutdown(nosave=True)
        except redis.RedisError:
            pass  # already gone
    for pid in redis_servers_under(var_dir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)  # a throwaway server; SIGTERM waits on a save


def redis_servers_under(var_dir: Path) -> list[int]:
    """The process ids of the embedded Redis servers running with their socket under ``var_dir``."""
    marker = str(var_dir.resolve()).encode()
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            command = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if b"redis-server" in command and marker in command:
            found.append(int(proc.name))
    return found


@contextmanager
def dev_server(var: Path, *, timeout: float = 60.0, **extra_env: str) -> Iterator[DevServer]:
    """Run `conveyor dev` in the fresh folder ``var`` until the block ends; yields once it serves.

    Its first-run sign-in link gives the token. ``extra_env`` is added to its environment.

    Raises:
      DevServerFailed: when it exits, or has not served ``/healthz`` within ``timeout`` s.
    """
    port = free_port()
    env = isolated_env(var, **extra_env)
    log_path = var / "server.log"
    log = log_path.open("w")
    process = subprocess.Popen([sys.executable, "-m", "web.cli", "dev", "--port", str(port), "--threads", "4"],
                               cwd=var, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise DevServerFailed("conveyor dev did not start:\n" + log_path.read_text())
            # The link is printed before the server listens: wait for both.
            match = _SIGN_IN.search(log_path.read_text())
            if match and healthy(url):
                break
            time.sleep(0.2)
        yield DevServer(url=url, token=match.group(2), sign_in_link=match.group(1), env=env)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
        stop_embedded_redis(var)
