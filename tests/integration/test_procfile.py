"""The Procfile, run as documented with honcho against Redis and PostgreSQL: the API serves, and a
separate worker process finishes the job."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from conveyor.statuses import TERMINAL
from tests.support.processes import stop_process_group, wait_until_healthy

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_honcho_start_serves_the_api_and_a_separate_worker_finishes_jobs(tmp_path):
    port = _free_port()
    env = {**os.environ, "PORT": str(port), "WEB_CONCURRENCY": "1", "WORKER_PROCESSES": "1",
           "WORKER_THREADS": "4", "STORAGE_URL": f"file://{tmp_path / 'files'}",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    release = subprocess.run(["conveyor", "db", "upgrade"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert release.returncode == 0, release.stderr
    user = subprocess.run(["conveyor", "users", "create", "procfile"], cwd=ROOT, env=env, capture_output=True,
                          text=True, check=True)
    token = user.stdout.strip().splitlines()[-1]
    log = (tmp_path / "honcho.log").open("wb")
    honcho = subprocess.Popen([sys.executable, "-m", "honcho", "start", "-f", "Procfile", "web", "worker", "clock"],
                              cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        health = wait_until_healthy(base, honcho, tmp_path / "honcho.log")
        assert health == {"status": "ok", "database": "ok", "broker": "ok"}
        deadline = time.monotonic() + 120
        headers = {"Authorization": f"Bearer {token}"}
        created = httpx.post(f"{base}/api/jobs", json={"pipeline": "demo", "input": {"items": 3}},
                             headers=headers, timeout=10)
        assert created.status_code == 202, created.text
        job_url = base + created.headers["Location"]
        while (job := httpx.get(job_url, headers=headers, timeout=10).json())["status"] not in TERMINAL:
            assert time.monotonic() < deadline, job
            time.sleep(0.3)
        assert job["status"] == "completed", job
        assert job["result"] == {"double": 10, "negated": -5}
    finally:
        stop_process_group(honcho)
        log.close()
