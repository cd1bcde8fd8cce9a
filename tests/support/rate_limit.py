"""An app whose job creations are rate-limited, and what the rate-limit tests count and send."""

from __future__ import annotations

from sqlalchemy import func, select

from pipelines.store.db import transaction
from pipelines.store.models import Job

LIMIT = 5


def limited_app(storage: str = "memory://"):
    from web.app import create_app

    return create_app({"TESTING": True, "JOB_RATE_LIMIT": f"{LIMIT}/minute", "RATELIMIT_STORAGE_URI": storage})


def post(client, auth):
    return client.post("/api/jobs", json={"pipeline": "demo", "input": {"items": 1}}, headers=auth)


def job_count() -> int:
    with transaction() as session:
        return session.scalar(select(func.count()).select_from(Job)) or 0
