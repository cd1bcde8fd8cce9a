"""Take docs/dashboard.png: `conveyor dev` in a scratch folder, a few jobs, headless Chromium.

    .venv/bin/python scripts/screenshot_dashboard.py

Uses Debian's chromium (apt-get install chromium) through Playwright; nothing is downloaded.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "docs" / "dashboard.png"
sys.path.insert(0, str(ROOT))  # scripts/ is not installed

from scripts.dev_server import DevServerFailed, dev_server  # noqa: E402


def main() -> None:
    var = Path(tempfile.mkdtemp(prefix="conveyor-shot-"))
    try:
        with dev_server(var, CONVEYOR_PROGRESS_INTERVAL="0.2") as server:
            api = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.token}"},
                               timeout=10)
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
                page.goto(server.sign_in_link)
                page.wait_for_selector('[role="progressbar"]')
                time.sleep(2)
                page.screenshot(path=str(OUTPUT), full_page=False)
                browser.close()
    except DevServerFailed as exc:
        raise SystemExit(str(exc)) from None
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
