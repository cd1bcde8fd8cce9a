"""The invariant every reliability test checks: one terminal state, no completed stage run twice, nothing lost.

Evidence comes from three places: the job store (the job, its stage runs, its events), and the
execution records the worker processes append (:mod:`tests.reliability.faulty`).
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from datetime import UTC
from pathlib import Path
from typing import Any

from sqlalchemy import select

from conveyor.statuses import TERMINAL
from pipelines.definition import get_pipeline
from pipelines.services.jobs import get_job
from pipelines.store.db import transaction
from pipelines.store.models import TERMINAL_RUN, JobEvent, StageRun
from tests.reliability.faulty import EXECUTIONS_ENV


def executions(job_id: str, event: str | None = None) -> list[dict[str, Any]]:
    """The execution records of ``job_id`` (``start``, ``done``, ``skipped``), oldest first."""
    path = Path(os.environ[EXECUTIONS_ENV])
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if r.get("job") == job_id and (event is None or r["event"] == event)]


def dispatch_token(run: StageRun) -> str:
    """The token of the message that may run ``run``; every queued or running run has one."""
    assert run.dispatch_token is not None, f"run {run.id} ({run.name}, {run.status}) has a dispatch token"
    return run.dispatch_token


def stage_runs(job_id: str) -> list[StageRun]:
    with transaction() as session:
        return list(session.scalars(
            select(StageRun).where(StageRun.job_id == job_id).order_by(StageRun.step, StageRun.item)))


def job_events(job_id: str) -> list[JobEvent]:
    with transaction() as session:
        return list(session.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id)))


def _epoch(value: Any) -> float:
    return value.replace(tzinfo=UTC).timestamp()


def _wait_for_runs_to_close(job_id: str, timeout: float) -> list[StageRun]:
    """A canceled or failed job's running stage closes its run when it ends; give it ``timeout`` s."""
    deadline = time.monotonic() + timeout
    runs = stage_runs(job_id)
    while any(r.status not in TERMINAL_RUN for r in runs) and time.monotonic() < deadline:
        time.sleep(0.1)
        runs = stage_runs(job_id)
    return runs


def assert_invariant(job_id: str, *, status: str, reruns_allowed: bool = False,
                     close_timeout: float = 15.0) -> dict[str, Any]:
    """Check the suite's invariant for one job and return the job.

    - the job is in exactly one terminal state, ``status``: one terminal status event per
      attempt of the job, the last one being ``status``, and no stage event after it;
    - no step completed twice (``stage completed`` events), and a completed job completed every step;
    - every stage run is closed; every completed run's stage returned exactly once (``done``
      records; at least once with ``reruns_allowed``, for faults that lose the record of a
      finished stage) and never started again after its completion was recorded;
    - a stage whose run never started never executed, and nothing executed outside a run;
    - nothing lost: a completed job has its result, a failed one its error.
    """
    job = get_job(job_id)
    assert job["status"] == status, f"job {job_id} is {job['status']}, expected {status}: {job}"

    events = job_events(job_id)
    terminal = [i for i, e in enumerate(events) if e.kind == "status" and e.data.get("status") in TERMINAL]
    assert len(terminal) == job["attempt"], f"{len(terminal)} terminal events for {job['attempt']} attempt(s)"
    assert events[terminal[-1]].data["status"] == status
    late = [e.data for e in events[terminal[-1] + 1:]]
    assert not late, f"events after the job ended: {late}"
    completed_steps = Counter(e.data["stage"] for e in events
                              if e.kind == "stage" and e.data.get("status") == "completed")
    twice = {name: n for name, n in completed_steps.items() if n > 1}
    assert not twice, f"steps completed more than once: {twice}"

    pipeline = get_pipeline(job["pipeline"])
    assert pipeline is not None
    if status == "completed":
        assert set(completed_steps) == set(pipeline.stage_names), completed_steps
        assert all(s["status"] == "completed" for s in job["stages"]), job["stages"]
        assert job["result"] is not None, "the completed job lost its result"
    if status == "failed":
        assert job["error"] and job["error"]["code"] and job["error"]["message"], job["error"]

    runs = _wait_for_runs_to_close(job_id, close_timeout)
    still_open = [r for r in runs if r.status not in TERMINAL_RUN]
    assert not still_open, f"runs left open: {still_open}"

    records = executions(job_id)
    by_run: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in records:
        if r["event"] in ("start", "done"):
            by_run.setdefault((r["stage"], r["item"]), []).append(r)
    stage_rows = {(r.name, r.item): r for r in runs if r.actor is not None}
    strays = set(by_run) - set(stage_rows)
    assert not strays, f"executions without a run (a stage that should never have run): {strays}"
    for key, run in stage_rows.items():
        ran = by_run.get(key, [])
        starts = [r for r in ran if r["event"] == "start"]
        done = [r for r in ran if r["event"] == "done"]
        if run.started_at is None:
            assert not ran, f"{key} never claimed, yet executed: {ran}"
        if run.status == "completed":
            assert (len(done) >= 1) if reruns_allowed else (len(done) == 1), \
                f"{key} completed, returned {len(done)} time(s): {ran}"
            finished = _epoch(run.finished_at)
            rerun = [r for r in starts if r["ts"] > finished]
            assert not rerun, f"{key} ran again after its completion was recorded: {rerun}"
    return job
