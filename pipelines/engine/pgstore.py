"""The engine's hot path on PostgreSQL: batches of claims and ends, one call each, through psycopg.

A stage hand-off through the ORM cost eight round trips and most of a worker's CPU in session, pool
and result handling. Here each thread that needs it (the consumer that claims what it fetched, the
writer that records ends) keeps one plain psycopg connection in autocommit, with server-side prepared
statements, and calls the functions of migration ``0003``: every call is one round trip and one
transaction. Claims commit with ``synchronous_commit = off``: a claim lost in a crash only lets a
stage run again, and the next synchronous commit (an end) flushes it anyway.
"""

from __future__ import annotations

import threading
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from conveyor.config import settings
from pipelines.engine.handoff import Applied
from pipelines.store.models import utcnow

_END_MANY = "SELECT idx, outcome, new_runs, joined FROM conveyor_end_many(%s)"
_CLAIM_MANY = ("SELECT run_id, step, item, name, attempts, checkpoint, started_at "
               "FROM conveyor_claim_many(%s, %s)")
# Hand back claimed runs whose messages go back to the broker unstarted: no attempt spent.
_RELEASE = ("UPDATE stage_runs SET status = 'queued', attempts = attempts - 1, lease_until = NULL, due_at = %s, "
            "updated_at = %s WHERE id = %s AND dispatch_token = %s AND status = 'processing'")

_local = threading.local()


def enabled() -> bool:
    """Whether the job store is PostgreSQL (else the general path serves every transition)."""
    return settings().database_url.startswith("postgresql")


def _dsn() -> str:
    url = settings().database_url
    return "postgresql://" + url.split("://", 1)[1]


def connection(*, durable: bool = True) -> psycopg.Connection[Any]:
    """This thread's connection (``durable=False``: commits without waiting for the disk)."""
    key = "durable" if durable else "relaxed"
    conn: psycopg.Connection[Any] | None = getattr(_local, key, None)
    if conn is None or conn.closed or conn.broken:
        conn = psycopg.connect(_dsn(), autocommit=True, prepare_threshold=0)
        if not durable:
            conn.execute("SET synchronous_commit = off")
        setattr(_local, key, conn)
    return conn


def apply_ends(plans: list[dict[str, Any]]) -> list[Applied]:
    """Apply the plans of a batch of ends in one call and one transaction; results in the same order."""
    rows = connection().execute(_END_MANY, (Jsonb(plans),)).fetchall()
    rows.sort(key=lambda row: row[0])
    return [Applied(outcome, new_runs or [], joined) for _, outcome, new_runs, joined in rows]


def claim_many(claims: list[dict[str, Any]], lease_seconds: float) -> dict[int, tuple]:
    """Claim the runs of fetched messages in one statement: ``{run id: (step, item, name, attempts,
    checkpoint, started_at)}`` for the runs claimed; a stale message's run is absent."""
    rows = connection(durable=False).execute(_CLAIM_MANY, (Jsonb(claims), lease_seconds)).fetchall()
    return {row[0]: tuple(row[1:]) for row in rows}


def release(runs: list[tuple[int, str]]) -> None:
    """Put claimed runs back to ``queued`` (their messages go back unstarted)."""
    now = utcnow()
    conn = connection()
    with conn.pipeline():
        for run_id, token in runs:
            conn.execute(_RELEASE, (now, now, run_id, token))


def close() -> None:
    """Close this thread's connections."""
    for key in ("durable", "relaxed"):
        conn = getattr(_local, key, None)
        if conn is not None:
            conn.close()
            setattr(_local, key, None)
