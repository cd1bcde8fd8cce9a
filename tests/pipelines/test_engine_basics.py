"""The engine on StubBroker + SQLite: pipelines run, fan out, join, fail and report progress."""

from __future__ import annotations

from sqlalchemy import select

from conveyor.statuses import TERMINAL
from pipelines.services.jobs import get_job, start_job
from pipelines.store.db import transaction
from pipelines.store.models import JobEvent, StageRun
from tests.support.jobs import wait_for_job


def test_demo_pipeline_runs_every_step_and_returns_the_merged_result(stub_worker):
    # Given a demo job with five items
    job = start_job(pipeline="demo", input={"items": 5})
    assert job["status"] == "pending"

    # When the worker runs it
    done = wait_for_job(job["id"])

    # Then every step completed and the result comes from the last step
    assert done["status"] == "completed"
    assert done["result"] == {"double": 2 * 30, "negated": -30}
    assert done["progress"] == 100.0
    assert [s["status"] for s in done["stages"]] == ["completed"] * 5
    assert done["stages"][1]["items"] == {"total": 5, "completed": 5, "failed": 0}
    assert done["finished_at"] and done["started_at"] and done["error"] is None


def test_a_fan_out_of_zero_items_joins_at_once(stub_worker):
    done = wait_for_job(start_job(pipeline="demo", input={"items": 0})["id"])
    assert done["status"] == "completed"
    assert done["result"] == {"double": 0, "negated": 0}


def test_tolerated_item_failures_complete_the_job_and_are_reported(stub_worker):
    done = wait_for_job(start_job(pipeline="demo", input={"items": 4, "fail_items": [1, 3]})["id"])
    assert done["status"] == "completed"
    failures = sorted((e["stage"], e["item"], e["code"]) for e in done["errors"])  # in the order they failed
    assert failures == [("work", 1, "demo_failure"), ("work", 3, "demo_failure")]
    assert done["stages"][1]["items"] == {"total": 4, "completed": 2, "failed": 2}
    assert done["result"] == {"double": 2 * (0 + 4), "negated": -4}


def test_a_failed_item_fails_a_strict_job_and_later_steps_never_run(stub_worker):
    done = wait_for_job(start_job(pipeline="demo_strict", input={"items": 3, "fail_items": [2]})["id"])
    assert done["status"] == "failed"
    assert done["error"]["stage"] == "work"
    assert done["error"]["code"] == "demo_failure"
    # What the steps before the failure made is kept
    assert done["result"] == {"prepare": [{"index": i, "fail": i == 2, "sleep": 0.0, "fail_mode": "permanent",
                                           "fail_times": 1} for i in range(3)]}
    work = done["stages"][1]
    assert work["status"] == "failed" and work["items"]["failed"] == 1 and work["items"]["total"] == 3
    assert work["attempts"] >= 1
    with transaction() as session:
        steps = session.scalars(select(StageRun.step).where(StageRun.job_id == done["id"])).all()
    assert max(steps) == 1  # count, branches and merge were never created


def test_progress_is_reported_with_a_step_text_and_never_decreases(stub_worker):
    job = start_job(pipeline="demo", input={"items": 4, "sleep": 0.4})
    seen = []
    while True:
        current = get_job(job["id"])
        seen.append(current["progress"])
        if current["status"] in TERMINAL:
            break
        if current["step"] and current["step"].startswith("Working on item"):
            assert current["stages"][1]["status"] == "processing"
    assert seen == sorted(seen)
    assert any(0 < p < 100 for p in seen)  # progress was seen between start and end
    assert seen[-1] == 100.0


def test_stage_and_status_events_are_recorded_in_order(stub_worker):
    done = wait_for_job(start_job(pipeline="noop_chain", input={"x": 1})["id"])
    assert done["result"] == {"x": 1}
    with transaction() as session:
        events = session.scalars(select(JobEvent).where(JobEvent.job_id == done["id"]).order_by(JobEvent.id)).all()
        kinds = [(e.kind, e.data.get("stage") or e.data.get("status"), e.data["status"]) for e in events]
    assert kinds[-1] == ("status", "completed", "completed")
    completed = [k[1] for k in kinds if k[0] == "stage" and k[2] == "completed"]
    assert completed == ["stage1", "stage2", "stage3", "stage4"]
