"""A stage's end planned in Python and applied by the store gives the job the general path gives it.

The general path (:mod:`pipelines.engine`) is the reference; the plan applied on SQLite
(:mod:`pipelines.sqlitestore`) must leave every job exactly as it would, chain, fan-out (capped or
not), parallel branches and tolerated failures alike. The same comparison runs on PostgreSQL in
``tests/integration/test_hot_path.py``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from pipelines import handoff, sqlitestore
from pipelines.jobs import start_job
from tests.support import wait_for_job

CASES = [
    ("noop_chain", {}),
    ("demo", {"items": 5}),  # a capped fan-out (4 at once), a stage, parallel branches, a stage
    ("demo", {"items": 3, "fail_items": [1]}),  # a tolerated failure inside the fan-out
    ("noop_fanout", {"items": 12}),
]

#: Fields that differ between two runs of the same job whatever path records them.
VOLATILE = {"id", "created_at", "started_at", "finished_at", "updated_at", "eta_seconds"}


def comparable(job: dict[str, Any]) -> dict[str, Any]:
    stages = [{k: v for k, v in s.items() if k not in ("started_at", "finished_at")} for s in job["stages"]]
    errors = sorted((e["stage"], e["item"], e["code"]) for e in job["errors"] or [])
    return {**{k: v for k, v in job.items() if k not in VOLATILE | {"stages", "errors"}},
            "stages": stages, "errors": errors}


@pytest.mark.parametrize(("pipeline", "request_input"), CASES, ids=[f"{p}-{i}" for i, (p, _) in enumerate(CASES)])
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
    monkeypatch.setattr(handoff, "plan_end", lambda end, durations=None: None)
    monkeypatch.setattr("pipelines.tracking.plan_end", lambda end, durations=None: None)
    general = wait_for_job(start_job(pipeline=pipeline, input=request_input)["id"])
    # Then both leave the job the same
    assert comparable(planned) == comparable(general)
