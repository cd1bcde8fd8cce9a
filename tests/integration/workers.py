"""Real ``dramatiq`` worker processes for the integration tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class WorkerProcess:
    """``dramatiq pipelines`` in its own process group, so SIGKILL takes its children too."""

    def __init__(self, *, threads: int = 4, processes: int = 1, extra_env: dict[str, str] | None = None) -> None:
        self.log = open(os.devnull, "wb")  # noqa: SIM115 - lives as long as the process
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dramatiq", "pipelines", "--processes", str(processes), "--threads",
             str(threads), "--worker-shutdown-timeout", "25000"],
            cwd=ROOT, env={**os.environ, **(extra_env or {})}, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self) -> None:
        """SIGKILL the whole worker: no shutdown hooks, no acks, no goodbyes."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def terminate(self, timeout: float = 40.0) -> float:
        """SIGTERM the worker and wait for it to exit; returns the seconds it took."""
        started = time.monotonic()
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=timeout)
        return time.monotonic() - started

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                self.terminate(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()
