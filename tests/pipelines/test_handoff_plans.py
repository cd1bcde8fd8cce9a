"""A stage's end planned in Python and applied by the store gives the job the general path gives it.

The general path (:mod:`pipelines.engine.machine`) is the reference; the plan applied on SQLite
(:mod:`pipelines.engine.sqlitestore`) must leave every job exactly as it would, chain, fan-out (capped or
not), parallel branches and tolerated failures alike. The same comparison runs on PostgreSQL in
``tests/integration/test_hot_path.py``.
"""

from __future__ import annotations

from collections import Counter

import pytest

from pipelines.engine import handoff, sqlitestore
from pipelines.services.jobs import start_job
from tests.support.jobs import HANDOFF_CASES, comparable_job, wait_for_job


@pytest.mark.parametrize(("pipeline", "request_input"), HANDOFF_CASES,
                         ids=[f"{p}-{i}" for i, (p, _) in enumerate(HANDOFF_CASES)])
def test_the_planned_path_ends_a_job_as_the_general_path_does(stub_worker, monkeypatch, pipeline, request_input):
    outcomes: Counter[str] = Counter()
    apply = sqlitestore.apply_ends

    def counted(connection, plans):
        applied = apply(connection, plans)
        outcomes.update(a.outcome for a in applied)
        return applied

    monkeypatch.setattr(sqlitestore, "apply_ends", counted)
    # Given the job run through plans applied by the store
    planned = wait_for_job(start_job(pipeline=pipeline, input=request_input)["id"])
    assert outcomes["advanced"] > 0 and sum(outcomes.values()) > outcomes["slow"]
    # When the same job runs through the general path only
    monkeypatch.setattr(handoff, "plan_end", lambda end, durations=None, rates=None: None)
    monkeypatch.setattr("pipelines.engine.tracking.plan_end", lambda end, durations=None, rates=None: None)
    general = wait_for_job(start_job(pipeline=pipeline, input=request_input)["id"])
    # Then both leave the job the same
    assert comparable_job(planned) == comparable_job(general)


def test_a_planned_end_and_a_general_one_of_the_same_job_in_one_transaction_both_count(stub_broker, db):
    from sqlalchemy import select

    from actors.errors import PermanentError
    from pipelines.engine import machine as engine
    from pipelines.engine.tracking import ActiveRun, StageTracking
    from pipelines.services.jobs import get_job
    from pipelines.store.db import autocommit, transaction
    from pipelines.store.models import StageRun

    def claimed(job_id: str, step: int) -> list[ActiveRun]:
        with transaction() as session:
            runs = session.scalars(select(StageRun).where(StageRun.job_id == job_id, StageRun.step == step,
                                                          StageRun.dispatch_token.is_not(None))).all()
        active = []
        for run in runs:
            with autocommit() as connection:
                got = engine.claim(connection, job_id, run.id, run.dispatch_token or "", 10.0, first_step=step == 0)
            assert got is not None
            active.append(ActiveRun(job_id, run.id, run.dispatch_token or "", got.started_at, got.step, got.item,
                                    "demo", 3 if step else None))
        return sorted(active, key=lambda a: a.item)

    # Given a demo job (a fan-out that tolerates failures) whose three items run
    job = start_job(pipeline="demo", input={"items": 3})["id"]
    (prepare,) = claimed(job, 0)
    with transaction() as session:
        StageTracking._finish(session, prepare, [{"index": i, "sleep": 0.0, "fail": False, "fail_mode": "permanent",
                                                  "fail_times": 1} for i in range(3)], None)
    first, second, third = claimed(job, 1)
    # When a failed item (the general path) and a finished one (a plan) are recorded in one transaction,
    # as a group commit of the job's ends does
    with transaction() as session:
        StageTracking._finish(session, first, None, PermanentError("item 0 cannot be done"))
        StageTracking._finish(session, second, {"index": 1, "square": 1}, None)
    # Then both count, and the last item joins the step
    assert get_job(job)["stages"][1]["items"] == {"total": 3, "completed": 1, "failed": 1}
    with transaction() as session:
        StageTracking._finish(session, third, {"index": 2, "square": 4}, None)
    done = get_job(job)
    assert done["stages"][1]["status"] == "completed" and done["stages"][2]["status"] == "processing"
