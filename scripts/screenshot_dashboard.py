"""Take docs/dashboard.png: `conveyor dev` in a scratch folder, a few jobs, headless Chromium.

    .venv/bin/python scripts/screenshot_dashboard.py

Uses Debian's chromium (apt-get install chromium) through Playwright; nothing is downloaded.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import redis
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "docs" / "dashboard.png"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> None:
    var = Path(tempfile.mkdtemp(prefix="conveyor-shot-"))
    port = _free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CONVEYOR_") and k not in ("DATABASE_URL", "REDIS_URL", "STORAGE_URL")}
    env.update(CONVEYOR_VAR_DIR=str(var), PYTHONPATH=str(ROOT), CONVEYOR_PROGRESS_INTERVAL="0.2")
    log = (var / "server.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "web.cli", "dev", "--port", str(port), "--threads", "4"],
                              cwd=var, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not (match := re.search(r"(http://\S+/#token=(\S+))", (var / "server.log").read_text())):
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("conveyor dev did not start:\n" + (var / "server.log").read_text())
            time.sleep(0.2)
        link, token = match.group(1), match.group(2)
        api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        while api.get("/healthz").status_code != 200:
            time.sleep(0.2)
        jobs = [
            {"pipeline": "demo", "input": {"items": 4}},
            {"pipeline": "demo", "input": {"items": 5, "fail_items": [2]}},
            {"pipeline": "demo_strict", "input": {"items": 3, "fail_items": [1]}},
            {"pipeline": "demo", "input": {"items": 8, "sleep": 6}},
            {"pipeline": "demo", "input": {"items": 6, "sleep": 12}},
        ]
        for job in jobs:
            api.post("/api/jobs", json=job).raise_for_status()
            time.sleep(0.5)
        time.sleep(6)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path="/usr/bin/chromium",
                args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(link)
            page.wait_for_selector('[role="progressbar"]')
            time.sleep(2)
            page.screenshot(path=str(OUTPUT), full_page=False)
            browser.close()
        print(f"wrote {OUTPUT}")
    finally:
        server.terminate()
        server.wait(timeout=15)
        log.close()
        socket_path = var / "redis.sock"
        if socket_path.exists():
            try:
                redis.Redis(unix_socket_path=str(socket_path), socket_timeout=5).shutdown(nosave=True)
            except redis.RedisError:
                pass


if __name__ == "__main__":
    main()
