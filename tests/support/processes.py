"""Child processes the tests start: stopping a process group, waiting for a server's health check."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any


def stop_process_group(process: subprocess.Popen, timeout: float = 40.0) -> None:
    """SIGTERM a process started in a session of its own (and all it started); SIGKILL after ``timeout`` s."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def wait_until_healthy(base: str, process: subprocess.Popen, log: Path, timeout: float = 60.0) -> dict[str, Any]:
    """Poll ``base``/healthz until it answers 200 (its JSON is returned); fail with the log's tail if
    ``process`` exits or ``timeout`` s pass first."""
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        try:
            health = httpx.get(f"{base}/healthz", timeout=2)
            if health.status_code == 200:
                return health.json()
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline and process.poll() is None, log.read_text()[-3000:]
        time.sleep(0.1)
