"""Real ``dramatiq`` worker processes for the integration and reliability tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conveyor.config import DEFAULTS

ROOT = Path(__file__).resolve().parents[2]
#: What Dramatiq's worker process logs once its threads run.
READY_LINE = "Worker process is ready for action."


class WorkerProcess:
    """``dramatiq pipelines.worker:setup`` in its own process group, so SIGKILL takes its children too.

    Parameters:
      threads, processes: Dramatiq's ``--threads`` and ``--processes``.
      extra_env: variables added to this test process's environment.
      log_path: where the worker's output goes (default: nowhere); read it with :meth:`output`.
      extra_args: more command-line arguments for ``dramatiq`` (e.g. ``-v``).
    """

    def __init__(self, *, threads: int = 4, processes: int = 1, extra_env: dict[str, str] | None = None,
                 log_path: Path | None = None, extra_args: tuple[str, ...] = ()) -> None:
        self.log_path = log_path
        self.log = open(log_path or os.devnull, "wb")  # noqa: SIM115 - lives as long as the process
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dramatiq", "pipelines.worker:setup", "--processes", str(processes), "--threads",
             str(threads), "--worker-shutdown-timeout", str(DEFAULTS.worker_shutdown_timeout_ms), *extra_args],
            cwd=ROOT, env={**os.environ, **(extra_env or {})}, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        """What the worker has logged so far ("" without a ``log_path``)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def wait_for_output(self, text: str, *, timeout: float = 30.0, count: int = 1) -> None:
        """Wait until ``text`` appears ``count`` times in the worker's log; raise TimeoutError after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while self.output().count(text) < count:
            if self.process.poll() is not None:
                raise RuntimeError(f"the worker exited ({self.process.returncode}):\n{self.output()[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{text!r} not logged within {timeout}s:\n{self.output()[-3000:]}")
            time.sleep(0.05)

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until every worker process has booted (needs a ``log_path``)."""
        self.wait_for_output(READY_LINE, timeout=timeout)

    def kill(self) -> None:
        """SIGKILL the whole worker: no shutdown hooks, no acks, no goodbyes."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def terminate(self, timeout: float = 40.0, *, group: bool = True) -> float:
        """SIGTERM the worker and wait for it to exit; returns the seconds it took.

        ``group=False`` signals only Dramatiq's main process, as Docker and Kubernetes do; it then
        stops its worker processes gracefully. Signalling the whole group (as systemd's default
        ``KillMode`` and Heroku do) hands each worker process two SIGTERMs at once, which
        :mod:`actors.broker.termination` takes as one.
        """
        started = time.monotonic()
        if group:
            os.killpg(self.process.pid, signal.SIGTERM)
        else:
            os.kill(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=timeout)
        return time.monotonic() - started

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                self.terminate(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()
