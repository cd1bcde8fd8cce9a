"""The hot path's round trips, counted at the protocol level on real PostgreSQL and Redis.

A regression that adds a statement or a Redis call per hand-off fails here deterministically,
where a timing would only drift. PostgreSQL round trips are read from libpq's trace of the engine's
own connections (one ``ReadyForQuery`` per round trip); Redis ones by counting what redis-py sends.
"""

from __future__ import annotations

import tempfile
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from unittest.mock import patch

import dramatiq
import pytest
import redis
from psycopg import pq
from sqlalchemy import select

from pipelines.engine import pgstore, progress
from pipelines.engine.handoff import StageEnd
from pipelines.engine.writer import EndWriter
from pipelines.services.jobs import get_job, start_job
from pipelines.store.db import transaction
from pipelines.store.models import StageRun
from tests.support.jobs import HANDOFF_CASES, comparable_job, wait_for_job

N = 20  #: ends in the batch


@contextmanager
def traced(durable: bool) -> Iterator[list[str]]:
    """libpq's trace of this thread's engine connection while the block runs (lines appended after)."""
    conn = pgstore.connection(durable=durable)
    lines: list[str] = []
    with tempfile.TemporaryFile(mode="w+") as trace:
        conn.pgconn.trace(trace.fileno())
        conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        try:
            yield lines
        finally:
            conn.pgconn.untrace()
            trace.seek(0)
            lines.extend(trace.read().splitlines())


def round_trips(lines: list[str]) -> int:
    return sum(1 for line in lines if line.startswith("B") and "ReadyForQuery" in line)


def first_runs(job_ids: list[str]) -> list[StageRun]:
    with transaction() as session:
        runs = session.scalars(select(StageRun).where(StageRun.job_id.in_(job_ids), StageRun.step == 0))
        return sorted(runs, key=lambda r: job_ids.index(r.job_id))


def claim(runs: list[StageRun]) -> dict[int, tuple]:
    return pgstore.claim_many([{"job": r.job_id, "run": r.id, "token": r.dispatch_token, "first": True}
                               for r in runs], 10.0)


@contextmanager
def redis_sends() -> Iterator[Counter[str]]:
    """Counts, per thread name, the packets redis-py sends (a pipeline is one)."""
    counts: Counter[str] = Counter()
    original = redis.connection.AbstractConnection.send_packed_command

    def counting(self, command, check_health=True):
        counts[threading.current_thread().name] += 1
        return original(self, command, check_health)

    with patch.object(redis.connection.AbstractConnection, "send_packed_command", counting):
        yield counts


def test_a_batch_of_ends_is_one_sql_round_trip_and_one_commit_and_one_redis_round_trip():
    # Given N chains whose first stages were claimed, and a writer whose connection is warm
    jobs = [start_job(pipeline="noop_chain", input={})["id"] for _ in range(N + 1)]
    runs = first_runs(jobs)
    claimed = claim(runs)
    writer = EndWriter()
    with transaction() as session:
        progress.past_durations(session, "noop_chain")  # the ETA's history, read once a minute

    def end_of(run: StageRun) -> StageEnd:
        step, item, _, _, _, started = claimed[run.id]
        return StageEnd(run.job_id, run.id, run.dispatch_token or "", "noop_chain", step, item, {}, started)

    writer.write([end_of(runs[0])])  # prepares the statement
    # When the other N ends are written together
    with traced(durable=True) as lines, redis_sends() as sends:
        writer.write([end_of(run) for run in runs[1:]])
    # Then the database saw one round trip, one statement in autocommit: one transaction, one commit
    assert round_trips(lines) == 1
    assert sum(1 for line in lines if line.startswith("F") and "Execute" in line) == 1
    assert not any("BEGIN" in line or "COMMIT" in line for line in lines)
    # And every next message, doorbell and notice went to Redis in one round trip
    assert sum(sends.values()) == 1
    # And every job moved on: its second stage is queued
    for job_id in jobs:
        assert get_job(job_id)["stages"][1]["status"] == "processing"


def test_the_runs_of_a_fetch_are_claimed_by_one_statement():
    jobs = [start_job(pipeline="noop_chain", input={})["id"] for _ in range(N + 1)]
    runs = first_runs(jobs)
    claim(runs[:1])  # prepares the statement
    with traced(durable=False) as lines:
        claimed = claim(runs[1:])
    assert round_trips(lines) == 1
    assert sorted(claimed) == sorted(r.id for r in runs[1:])
    # A second claim of the same messages (a redelivery) takes nothing
    assert claim(runs[1:]) == {}


def run_chains(count: int) -> tuple[int, Counter[str]]:
    """Queue ``count`` chains, then let a new worker of this process run them all."""
    jobs = [start_job(pipeline="noop_chain", input={})["id"] for _ in range(count)]
    worker = dramatiq.Worker(dramatiq.get_broker(), worker_threads=8)
    try:
        with redis_sends() as sends:
            worker.start()
            for job_id in jobs:
                assert wait_for_job(job_id, timeout=60)["status"] == "completed"
    finally:
        worker.stop()
    return 4 * count, sends


@pytest.mark.slow
def test_a_busy_worker_spends_at_most_two_redis_round_trips_per_hand_off():
    # Given a warm connection pool (a new connection's handshake costs a few commands once)
    run_chains(40)
    # When a worker runs 40 queued chains
    hand_offs, sends = run_chains(40)
    # Then its Redis round trips (fetches, acks, sends, doorbell waits) stay within 2 per hand-off
    worker_sends = sum(count for name, count in sends.items() if name != "MainThread")
    assert worker_sends <= 2 * hand_offs, (worker_sends, hand_offs, sorted(sends.items()))


def test_a_full_writer_makes_the_worker_threads_wait_instead_of_growing(monkeypatch):
    # Given a writer with room for two ends, held while it writes its first batch
    jobs = [start_job(pipeline="noop_chain", input={})["id"] for _ in range(6)]
    runs = first_runs(jobs)
    claimed = claim(runs)
    release = threading.Event()
    write = pgstore.apply_ends

    def held(plans):
        release.wait(30)
        return write(plans)

    monkeypatch.setattr(pgstore, "apply_ends", held)
    writer = EndWriter(capacity=2)
    writer.start()
    ends = [StageEnd(r.job_id, r.id, r.dispatch_token or "", "noop_chain", claimed[r.id][0], claimed[r.id][1], {},
                     claimed[r.id][5]) for r in runs]
    submitted: list[int] = []

    def worker_thread() -> None:
        for end in ends:
            writer.submit(end)
            submitted.append(end.run_id)

    thread = threading.Thread(target=worker_thread)
    thread.start()
    # When the writer cannot keep up: one batch being written, two ends waiting
    thread.join(1.0)
    # Then the thread that finished stages waits for room instead of queueing more
    assert thread.is_alive()
    assert len(submitted) <= 4
    assert writer.queue.qsize() <= 2
    # And once the writer goes on, every end is written and the thread is free again
    release.set()
    thread.join(10)
    assert not thread.is_alive() and len(submitted) == len(ends)
    writer.stop()
    for job_id in jobs:
        assert get_job(job_id)["stages"][0]["status"] == "completed"


@pytest.mark.parametrize(("pipeline", "request_input"), HANDOFF_CASES,
                         ids=[f"{p}-{i}" for i, (p, _) in enumerate(HANDOFF_CASES)])
def test_ends_written_behind_leave_a_job_as_the_general_path_does(monkeypatch, pipeline, request_input):
    # Given a worker of this process, whose writer applies plans with the PostgreSQL function
    worker = dramatiq.Worker(dramatiq.get_broker(), worker_threads=4)
    worker.start()
    try:
        planned = wait_for_job(start_job(pipeline=pipeline, input=request_input)["id"], timeout=60)
        # When the same job's ends all take the general path
        monkeypatch.setattr("pipelines.engine.writer.plan_end", lambda end, durations=None, rates=None: None)
        general = wait_for_job(start_job(pipeline=pipeline, input=request_input)["id"], timeout=60)
    finally:
        worker.stop()
    # Then both leave the job the same
    assert comparable_job(planned) == comparable_job(general)
