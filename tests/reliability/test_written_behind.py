"""Stage ends written behind the worker threads: acknowledged first, committed by the writer after.

Until the writer commits an end, its run stays ``processing`` under a lease the process keeps: a
worker killed in between is a worker killed mid-stage, and a database restarted in between only
delays the commit.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from pipelines.services.jobs import get_job, start_job
from pipelines.store.db import dispose_all
from tests.reliability.fault_injection import restart_postgres
from tests.reliability.faulty import EXECUTIONS_ENV, WRITER_GATE_ENV
from tests.reliability.invariant import assert_invariant, executions, stage_runs
from tests.support.jobs import wait_for_job
from tests.support.waiting import wait_until


def _ran(job_id: str, stage: str, event: str = "done") -> list[dict]:
    return [r for r in executions(job_id, event) if r["stage"] == stage]


def _held_by_the_writer(run_id: int) -> bool:
    """Whether a worker's writer holds the end of ``run_id`` (it records each batch it holds)."""
    path = Path(os.environ[EXECUTIONS_ENV])
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    return any(r["event"] == "writer_waits" and run_id in r["runs"] for r in records)


def _chain_with_its_first_end_held(start_worker, gate: Path, tag: str):
    """A worker whose writer holds every end (while ``gate`` exists), and a chain whose first stage
    returned there: its message acknowledged, its end waiting in the writer. Returns both and the run."""
    gate.touch()
    worker = start_worker("a", env={WRITER_GATE_ENV: str(gate)})
    job = start_job(pipeline="rel_chain", input={"seconds": 0.2, "tag": tag})["id"]
    wait_until(lambda: _ran(job, "begin"), timeout=30, what="the first stage to return")
    begin = next(r for r in stage_runs(job) if r.name == "begin")
    wait_until(lambda: _held_by_the_writer(begin.id), timeout=10, what="the writer to hold the end")
    return worker, job, begin


def test_a_worker_killed_after_acknowledging_a_stage_before_its_end_is_written_runs_it_again(
        start_worker, scratch, measure):
    # Given worker A, whose writer holds the end of a chain's first stage (its message acknowledged)
    first, job, begin = _chain_with_its_first_end_held(start_worker, scratch / "writer-gate", "behind")
    assert begin.status == "processing"  # not yet written: still under A's lease
    time.sleep(4)  # longer than a third of the lease: A's lease keeper renews the run meanwhile
    assert next(r for r in stage_runs(job) if r.name == "begin").status == "processing"
    second = start_worker("b")
    # And A is killed with SIGKILL before its writer wrote the end
    first.kill()
    killed_at = time.monotonic()
    # Then the stage runs again on B within 15 s (its first return was never recorded: at least once),
    # and the job completes once with no stage recorded completed twice
    wait_until(lambda: len(_ran(job, "begin", "start")) == 2, timeout=15, what="the stage to run again")
    measure("SIGKILL with an end waiting in the writer: the stage ran again after", time.monotonic() - killed_at)
    assert_invariant(wait_for_job(job, timeout=30)["id"], status="completed", reruns_allowed=True)
    assert second.process.poll() is None


def test_ends_waiting_in_the_writer_while_postgresql_restarts_are_written_once(start_worker, scratch, measure):
    # Given a worker whose writer holds the ends of a fan-out's items
    gate = scratch / "writer-gate"
    gate.touch()
    start_worker("a", threads=4, env={WRITER_GATE_ENV: str(gate)})
    job = start_job(pipeline="rel_fanout", input={"items": 4, "sleep": 0.1})["id"]
    wait_until(lambda: _ran(job, "split"), timeout=30, what="the first stage to return")
    # When PostgreSQL restarts while those ends wait, and the writer then goes on
    took = restart_postgres()
    dispose_all()  # this process's pooled connections died with the server
    gate.unlink()
    released = time.monotonic()
    # Then every end is written once and the job completes
    assert_invariant(wait_for_job(job, timeout=60)["id"], status="completed", reruns_allowed=True)
    measure(f"PostgreSQL restarted ({took:.1f} s) with ends in the writer: the job completed after",
            time.monotonic() - released)
    assert get_job(job)["stages"][1]["items"] == {"total": 4, "completed": 4, "failed": 0}


def test_a_worker_stopped_with_ends_in_its_writer_writes_them_before_it_exits(start_worker, scratch, measure):
    # Given worker A, whose writer holds the end of a chain's first stage, and an idle worker B
    gate = scratch / "writer-gate"
    first, job, begin = _chain_with_its_first_end_held(start_worker, gate, "drain")
    start_worker("b")
    # When A is told to stop (SIGTERM to every process, as Heroku does) and its writer goes on a moment later
    threading.Timer(1.0, gate.unlink).start()
    took = first.terminate(timeout=40, group=True)
    measure("SIGTERM with an end in the writer: the worker wrote it and exited after", took)
    # Then A wrote the end before exiting: the stage ran once, and the job completes
    assert next(r for r in stage_runs(job) if r.name == "begin").status == "completed"
    done = assert_invariant(wait_for_job(job, timeout=30)["id"], status="completed")
    assert len(_ran(job, "begin", "start")) == 1
    assert done["stages"][0]["attempts"] == 1
