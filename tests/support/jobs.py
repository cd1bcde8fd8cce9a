"""Jobs as the tests watch them: waiting for a status, and comparing two runs of the same job."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from conveyor.statuses import TERMINAL


def wait_for_job(job_id: str, *, timeout: float = 60.0, status: tuple[str, ...] = TERMINAL) -> dict[str, Any]:
    """Poll the job until its status is one of ``status``; fail the test after ``timeout`` s."""
    from pipelines.services.jobs import get_job

    deadline = time.monotonic() + timeout
    job = get_job(job_id)
    while job["status"] not in status:
        if time.monotonic() > deadline:
            pytest.fail(f"job {job_id} still {job['status']} after {timeout}s: step={job['step']!r}")
        time.sleep(0.02)
        job = get_job(job_id)
    return job


def unique(name: str) -> str:
    return f"{name}_{uuid.uuid4().hex[:8]}"


#: Jobs whose hand-offs cover every kind of step: chain, capped fan-out, parallel, tolerated failure.
HANDOFF_CASES = [
    ("noop_chain", {}),
    ("demo", {"items": 5}),  # a capped fan-out (4 at once), a stage, parallel branches, a stage
    ("demo", {"items": 3, "fail_items": [1]}),  # a tolerated failure inside the fan-out
    ("noop_fanout", {"items": 12}),
]

#: Fields that differ between two runs of the same job whatever path records them.
VOLATILE = {"id", "created_at", "started_at", "finished_at", "updated_at", "eta_seconds"}


def comparable_job(job: dict[str, Any]) -> dict[str, Any]:
    """A finished job without what differs between two runs of it (ids, times, the ETA)."""
    stages = [{k: v for k, v in s.items() if k not in ("started_at", "finished_at")} for s in job["stages"]]
    errors = sorted((e["stage"], e["item"], e["code"]) for e in job["errors"] or [])
    return {**{k: v for k, v in job.items() if k not in VOLATILE | {"stages", "errors"}},
            "stages": stages, "errors": errors}
