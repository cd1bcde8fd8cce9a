"""The engine's end plans applied on SQLite, in Python: what migration ``0003``'s functions do on PostgreSQL.

SQLite has no stored functions, and needs none: it runs in this process. The plans of
:mod:`pipelines.engine.handoff` are applied here with table-level statements inside the caller's
transaction (``BEGIN IMMEDIATE``, so the job's row is as good as locked). The outcomes are the same
as PostgreSQL's, and ``tests/integration/test_hot_path.py`` holds the two adapters to that.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Connection, Table, select

from conveyor.statuses import JobStatus
from pipelines.engine.handoff import Applied
from pipelines.engine.progress import eta_from, parse_iso
from pipelines.store.jobrow import JOBS
from pipelines.store.models import STEP_ROW, JobEvent, RunStatus, StageRun, iso, utcnow

RUNS: Table = StageRun.__table__  # type: ignore[assignment]
EVENTS: Table = JobEvent.__table__  # type: ignore[assignment]
_JOB = select(JOBS.c.status, JOBS.c.stages, JOBS.c.progress, JOBS.c.webhook_url)


def apply_ends(connection: Connection, plans: list[dict[str, Any]]) -> list[Applied]:
    """Apply the plans in the caller's transaction; one outcome per plan, in order."""
    return [_apply(connection, plan) for plan in plans]


def _apply(c: Connection, e: dict[str, Any]) -> Applied:  # noqa: C901 - one transition, read top to bottom
    now = utcnow()
    row = c.execute(_JOB.where(JOBS.c.id == e["job"])).first()
    if row is None:
        return Applied("stale", [])
    status, stages, progress, webhook = row
    stages = [dict(s) for s in stages or []]
    run = (RUNS.c.id == e["run"]) & (RUNS.c.status == RunStatus.PROCESSING.value) & (
        RUNS.c.dispatch_token == e["token"])
    step, item, me = e["step"], e["item"], e["self"]
    if status != JobStatus.PROCESSING.value:
        done = c.execute(RUNS.update().where(run).values(
            status=RunStatus.CANCELED.value, output=None, progress=1.0, finished_at=now, lease_until=None, error=None,
            updated_at=now))
        return Applied("canceled" if done.rowcount else "stale", [])

    finish, nxt = e["next"] is None, e["next"]
    last, joined, value = True, None, e["output"]
    if item >= 0:
        counts = stages[step]["items"]
        ended = counts["completed"] + counts["failed"] + 1
        last = ended >= counts["total"]
        if last:
            if finish:
                return Applied("slow", [])
            items = c.execute(select(RUNS.c.id, RUNS.c.name, RUNS.c.status, RUNS.c.output, RUNS.c.error).where(
                RUNS.c.job_id == e["job"], RUNS.c.step == step, RUNS.c.item >= 0).order_by(RUNS.c.item)).all()
            outputs = [(name, e["output"] if rid == e["run"] else out if st == RunStatus.COMPLETED.value
                        else {"error": err}) for rid, name, st, out, err in items]
            joined = dict(outputs) if me["join"] == "object" else [out for _, out in outputs]
            value = joined
    if last:
        if finish and webhook is not None:
            return Applied("slow", [])
        if not finish and nxt["kind"] == "fan_out" and (not isinstance(value, list) or not value):
            return Applied("slow", [])

    started_row = c.execute(select(RUNS.c.started_at, RUNS.c.attempts).where(run)).first()
    if started_row is None:
        return Applied("stale", [])
    run_started, attempts = started_row
    c.execute(RUNS.update().where(run).values(
        status=RunStatus.COMPLETED.value, output=e["output"], progress=1.0, finished_at=now, lease_until=None,
        error=None, updated_at=now, duration=(now - run_started).total_seconds() if run_started else None))

    new_runs: list[dict[str, Any]] = []
    if item >= 0:
        counts = dict(stages[step]["items"])
        counts["completed"] += 1
        stages[step]["items"] = counts
        if not last:
            if me["cap"]:
                in_flight = c.execute(select(RUNS.c.id).where(
                    RUNS.c.job_id == e["job"], RUNS.c.step == step, RUNS.c.item >= 0,
                    RUNS.c.status.in_([RunStatus.QUEUED.value, RunStatus.PROCESSING.value]))).all()
                waiting = c.execute(select(RUNS.c.id, RUNS.c.item, RUNS.c.actor, RUNS.c.input).where(
                    RUNS.c.job_id == e["job"], RUNS.c.step == step, RUNS.c.item >= 0,
                    RUNS.c.status == RunStatus.WAITING.value).order_by(RUNS.c.item)
                    .limit(max(0, me["cap"] - len(in_flight)))).all()
                for rid, witem, actor, winput in waiting:
                    token = str(uuid.uuid4())
                    c.execute(RUNS.update().where(RUNS.c.id == rid).values(
                        status=RunStatus.QUEUED.value, dispatch_token=token, lease_until=None, due_at=now,
                        updated_at=now, queue=me["queue"]))
                    new_runs.append({"id": rid, "token": token, "item": witem, "actor": actor, "input": winput})
            fraction = ended / counts["total"]
            shown = max(progress or 0.0, round(100.0 * (me["p_before"] + me["p_weight"] * fraction), 2))
            stages[step]["progress"] = max(stages[step].get("progress") or 0.0, round(100.0 * fraction, 2))
            c.execute(JOBS.update().where(JOBS.c.id == e["job"]).values(
                stages=stages, progress=shown, updated_at=now, eta_at=now,
                eta_seconds=eta_from(shown, 100.0 * me["p_before"], parse_iso(stages[step].get("started_at")), now,
                                     me["history"], fraction)))
            return Applied("counted", new_runs)
        step_row = (RUNS.c.job_id == e["job"]) & (RUNS.c.step == step) & (RUNS.c.item == STEP_ROW)
        step_started = c.execute(select(RUNS.c.started_at).where(step_row)).scalar()
        c.execute(RUNS.update().where(step_row).values(
            status=RunStatus.COMPLETED.value, output=joined, progress=1.0, finished_at=now, updated_at=now,
            duration=(now - step_started).total_seconds() if step_started else None))
        attempts = None

    stages[step].update(status="completed", progress=100.0, finished_at=iso(now), attempts=attempts or 1)
    c.execute(EVENTS.insert(), {"job_id": e["job"], "kind": "stage", "created_at": now,
                                "data": {"stage": stages[step]["name"], "status": "completed"}})
    if finish:
        c.execute(EVENTS.insert(), {"job_id": e["job"], "kind": "status", "created_at": now,
                                    "data": {"status": JobStatus.COMPLETED.value}})
        c.execute(JOBS.update().where(JOBS.c.id == e["job"]).values(
            status=JobStatus.COMPLETED.value, progress=100.0, step="Done", stages=stages,
            result=value if isinstance(value, dict) else {"output": value}, finished_at=now, updated_at=now,
            eta_seconds=None, eta_at=None, notified_at=None))
        return Applied("finished", [], joined)

    index = step + 1
    stages[index].update(status="processing", started_at=iso(now), finished_at=None, error=None)
    runs = nxt["runs"]

    def queued(item_index: int, spec: dict[str, Any], item_input: Any) -> dict[str, Any]:
        return {"job_id": e["job"], "step": index, "item": item_index, "name": spec["name"], "actor": spec["actor"],
                "status": RunStatus.QUEUED.value, "input": item_input, "dispatch_token": str(uuid.uuid4()),
                "queue": spec["queue"], "due_at": now, "lease_until": None, "updated_at": now}

    if nxt["kind"] == "stage":
        rows = [queued(STEP_ROW, runs[0], value)]
    else:
        c.execute(RUNS.insert(), {"job_id": e["job"], "step": index, "item": STEP_ROW, "name": nxt["name"],
                                  "status": RunStatus.PROCESSING.value, "started_at": now, "updated_at": now})
        if nxt["kind"] == "fan_out":
            cap = nxt["cap"] or len(value)
            rows = [queued(i, runs[0], v) if i < cap else
                    {"job_id": e["job"], "step": index, "item": i, "name": runs[0]["name"], "actor": runs[0]["actor"],
                     "status": RunStatus.WAITING.value, "input": v, "updated_at": now}
                    for i, v in enumerate(value)]
            total = len(value)
        else:
            rows = [queued(i, spec, value) for i, spec in enumerate(runs)]
            total = len(runs)
        stages[index]["items"] = {"total": total, "completed": 0, "failed": 0}
    for new in rows:
        rid = c.execute(RUNS.insert().values(**new).returning(RUNS.c.id)).scalar_one()
        if new["status"] == RunStatus.QUEUED.value:
            new_runs.append({"id": rid, "token": new["dispatch_token"], "item": new["item"]})
    shown = max(progress or 0.0, nxt["progress"])
    c.execute(JOBS.update().where(JOBS.c.id == e["job"]).values(
        progress=shown, step=nxt["step_text"], stages=stages, updated_at=now, eta_at=now,
        eta_seconds=eta_from(shown, nxt["progress"], now, now, nxt["history"], 0.0)))
    return Applied("advanced", new_runs, joined)
