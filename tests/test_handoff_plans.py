"""A stage's end planned in Python and applied by the store gives the job the general path gives it.

The general path (:mod:`pipelines.engine`) is the reference; the plan applied on SQLite
(:mod:`pipelines.sqlitestore`) must leave every job exactly as it would, chain, fan-out (capped or
not), parallel branches and tolerated failures alike. The same comparison runs on PostgreSQL in
``tests/integration/test_hot_path.py``.
"""

from __future__ import annotations

from collections import Counter

import pytest

from pipelines import handoff, sqlitestore
from pipelines.jobs import start_job
from tests.support import HANDOFF_CASES, comparable_job, wait_for_job


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
    monkeypatch.setattr(handoff, "plan_end", lambda end, durations=None: None)
    monkeypatch.setattr("pipelines.tracking.plan_end", lambda end, durations=None: None)
    general = wait_for_job(start_job(pipeline=pipeline, input=request_input)["id"])
    # Then both leave the job the same
    assert comparable_job(planned) == comparable_job(general)
