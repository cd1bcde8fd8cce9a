"""`conveyor web`: gunicorn with gevent workers serves the API and event streams (embedded Redis, SQLite)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import httpx
import pytest

from scripts.dev_server import free_port, healthy, isolated_env, stop_embedded_redis

pytestmark = pytest.mark.slow


def test_gunicorn_serves_polls_and_event_streams(tmp_path):
    env = isolated_env(tmp_path / "var", WEB_CONCURRENCY="2")
    cli = [sys.executable, "-m", "web.cli"]
    subprocess.run([*cli, "db", "upgrade"], env=env, cwd=tmp_path, check=True, capture_output=True)
    created = subprocess.run([*cli, "users", "create", "web"], env=env, cwd=tmp_path, check=True,
                             capture_output=True, text=True)
    token = created.stdout.strip().splitlines()[-1]
    port = free_port()
    server = subprocess.Popen([*cli, "web", "--port", str(port)], env=env, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not healthy(base):
            assert server.poll() is None and time.monotonic() < deadline, "gunicorn did not start"
            time.sleep(0.3)

        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=10) as client:
            job = client.post("/api/jobs", json={"pipeline": "noop_chain", "input": {}}).json()
            events: list[tuple[str, dict]] = []

            def follow() -> None:
                with client.stream("GET", f"/api/jobs/{job['id']}/events", timeout=30) as response:
                    kind = None
                    for line in response.iter_lines():
                        if line.startswith("event: "):
                            kind = line[7:]
                        elif line.startswith("data: "):
                            events.append((kind or "", json.loads(line[6:])))

            reader = threading.Thread(target=follow, daemon=True)
            reader.start()
            deadline = time.monotonic() + 10
            while not events and time.monotonic() < deadline:
                time.sleep(0.05)
            assert events and events[0][1]["status"] == "pending"

            # A change made through the other worker process reaches the stream through Redis pub/sub
            for _ in range(4):
                assert client.get(f"/api/jobs/{job['id']}").status_code == 200
            assert client.post(f"/api/jobs/{job['id']}/cancel").status_code == 202
            reader.join(timeout=15)
            assert not reader.is_alive(), "the stream did not end after the terminal status"
            assert events[-1] == ("status", events[-1][1]) and events[-1][1]["status"] == "canceled"
    finally:
        server.terminate()
        try:
            output, _ = server.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            output, _ = server.communicate()
    stop_embedded_redis(tmp_path / "var")
    assert "Traceback" not in output, output
