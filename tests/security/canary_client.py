"""The API side of the canary-key test, run in a process whose broker is a real Redis.

``python -m tests.security.canary_client setup OUT`` migrates the database and writes a user's
token to ``OUT/token``; ``... run OUT HOOK_URL`` uploads the sample lecture, starts a
``lecture_notes`` job with a webhook, waits for it to fail and for the webhook to be
dead-lettered, and writes every API answer to ``OUT/responses.json``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from conveyor.statuses import TERMINAL

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "lecture.mp3"
#: Dramatiq's dead-letter set of the webhook queue.
WEBHOOK_DEAD_LETTERS = "dramatiq:webhooks.XQ"


def setup(out: Path) -> None:
    from pipelines.services.users import create_user
    from pipelines.store.migrate import upgrade

    upgrade()
    (out / "token").write_text(create_user("canary").token)


def run(out: Path, hook_url: str, timeout: float = 120.0) -> None:
    import io

    import redis

    from conveyor.config import settings
    from web.app import create_app

    client = create_app({"TESTING": True}).test_client()
    auth = {"Authorization": f"Bearer {(out / 'token').read_text()}"}
    answers: list[dict[str, Any]] = []

    def keep(response):
        answers.append({"status": response.status_code, "headers": dict(response.headers),
                        "body": response.get_data(as_text=True)})
        return response

    upload = keep(client.post("/api/files", data={"file": (io.BytesIO(SAMPLE.read_bytes()), "lecture.mp3")},
                              headers=auth, content_type="multipart/form-data")).get_json()
    job = keep(client.post("/api/jobs", headers=auth, json={
        "pipeline": "lecture_notes", "input": {"audio": f"file:{upload['id']}"}, "webhook_url": hook_url,
    })).get_json()
    deadline = time.monotonic() + timeout
    while client.get(f"/api/jobs/{job['id']}", headers=auth).get_json()["status"] not in TERMINAL:
        if time.monotonic() > deadline:
            raise SystemExit(f"job {job['id']} did not finish in {timeout} s")
        time.sleep(0.2)
    keep(client.get(f"/api/jobs/{job['id']}", headers=auth))
    keep(client.get(f"/api/jobs/{job['id']}/events", headers=auth))
    keep(client.get("/api/jobs", headers=auth))
    keep(client.get("/api/notifications", headers=auth))
    keep(client.get("/api/stats", headers=auth))
    keep(client.post(f"/api/jobs/{job['id']}/cancel", headers=auth))  # 409: a problem document
    keep(client.get("/healthz"))
    broker = redis.Redis.from_url(settings().redis_url or "")
    while not broker.zcard(WEBHOOK_DEAD_LETTERS):
        if time.monotonic() > deadline:
            raise SystemExit("the failed webhook delivery was not dead-lettered")
        time.sleep(0.2)
    (out / "responses.json").write_text(json.dumps(answers, indent=1))


if __name__ == "__main__":
    command, folder = sys.argv[1], Path(sys.argv[2])
    if command == "setup":
        setup(folder)
    else:
        run(folder, sys.argv[3])
