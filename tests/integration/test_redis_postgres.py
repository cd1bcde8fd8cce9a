"""The engine on Redis + PostgreSQL with real worker processes: it finishes jobs through crashes."""

from __future__ import annotations

import time

import pytest
import redis
from sqlalchemy import select

from pipelines.services.jobs import get_job, start_job
from pipelines.store.db import transaction
from pipelines.store.models import JobEvent, StageRun
from tests.support.jobs import wait_for_job
from tests.support.services import INTEGRATION_REDIS_URL
from tests.support.workers import WorkerProcess


@pytest.fixture
def worker():
    process = WorkerProcess()
    yield process
    process.stop()


def _item_runs(job_id: str) -> list[StageRun]:
    with transaction() as session:
        return list(session.scalars(
            select(StageRun).where(StageRun.job_id == job_id, StageRun.step == 1, StageRun.item >= 0)
            .order_by(StageRun.item)))


def _completed_stage_events(job_id: str) -> list[str]:
    with transaction() as session:
        events = session.scalars(select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.kind == "stage"))
        return [e.data["stage"] for e in events if e.data.get("status") == "completed"]


def test_a_pipeline_runs_end_to_end_on_redis_and_postgres(worker):
    done = wait_for_job(start_job(pipeline="demo", input={"items": 6, "fail_items": [2]})["id"], timeout=60)
    assert done["status"] == "completed"
    assert done["result"] == {"double": 2 * (0 + 1 + 9 + 16 + 25), "negated": -(0 + 1 + 9 + 16 + 25)}
    assert [e["item"] for e in done["errors"]] == [2]
    assert _completed_stage_events(done["id"]) == ["prepare", "work", "count", "branches", "merge"]


@pytest.mark.slow
def test_a_worker_killed_mid_stage_loses_nothing_and_the_stage_reruns_within_15_seconds():
    # Given a job whose only item takes a few seconds, running on a worker
    first = WorkerProcess()
    try:
        job = start_job(pipeline="demo", input={"items": 1, "sleep": 4})
        deadline = time.monotonic() + 30
        while not any(r.status == "processing" for r in _item_runs(job["id"])):
            assert time.monotonic() < deadline, "the item never started"
            time.sleep(0.05)
        time.sleep(0.5)
        # When the worker is killed with SIGKILL mid-stage
        first.kill()
        killed_at = time.monotonic()
    finally:
        first.stop()
    second = WorkerProcess()
    try:
        # Then the stage runs again elsewhere within 15 s
        while _item_runs(job["id"])[0].attempts < 2:
            assert time.monotonic() - killed_at < 15, "the killed stage did not run again within 15 s"
            time.sleep(0.1)
        rerun_after = time.monotonic() - killed_at
        done = wait_for_job(job["id"], timeout=60)
    finally:
        second.stop()
    # And the job finishes, with no stage completed twice
    assert done["status"] == "completed", done
    assert _item_runs(job["id"])[0].output["attempt"] == 2
    assert _completed_stage_events(job["id"]) == ["prepare", "work", "count", "branches", "merge"]
    print(f"killed stage ran again after {rerun_after:.1f}s")


@pytest.mark.slow
def test_a_job_completes_after_redis_is_flushed_mid_job(worker):
    # Given a job with items still queued behind a concurrency cap
    job = start_job(pipeline="demo", input={"items": 8, "sleep": 0.6})
    deadline = time.monotonic() + 30
    while not any(r.status == "completed" for r in _item_runs(job["id"])):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    # When every message in Redis is lost
    redis.Redis.from_url(INTEGRATION_REDIS_URL).flushdb()
    # Then the reconciler sends the lost work again and the job completes
    done = wait_for_job(job["id"], timeout=90)
    assert done["status"] == "completed"
    assert done["stages"][1]["items"] == {"total": 8, "completed": 8, "failed": 0}
    assert get_job(job["id"])["result"]["double"] == 2 * sum(i * i for i in range(8))


def test_the_migrated_postgres_schema_matches_the_models():
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from pipelines.store.db import get_engine
    from pipelines.store.models import Base

    with get_engine().connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
