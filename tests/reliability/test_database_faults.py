"""PostgreSQL restarted under running jobs: they still finish, each in one terminal state."""

from __future__ import annotations

import time

from pipelines.services.jobs import start_job
from pipelines.store.db import dispose_all
from tests.reliability.fault_injection import require_postgres_restart, restart_postgres
from tests.reliability.invariant import assert_invariant, executions
from tests.support.jobs import wait_for_job
from tests.support.waiting import wait_until


def test_jobs_finish_when_postgresql_restarts_mid_job(start_worker, measure):
    require_postgres_restart()
    # Given a fan-out and a chain in flight: items done, running and waiting; a stage mid-work
    worker = start_worker("w", threads=4)
    fanout = start_job(pipeline="rel_fanout", input={"items": 6, "sleep": 1.0})["id"]
    chain = start_job(pipeline="rel_chain", input={"seconds": 3, "tag": "postgres restart"})["id"]
    wait_until(lambda: executions(fanout, "done")[1:] and executions(chain, "start")[1:], timeout=30,
               what="both jobs to be under way")
    # When PostgreSQL restarts, dropping every connection
    measure("PostgreSQL restart took", restart_postgres())
    restarted = time.monotonic()
    dispose_all()  # this process's pooled connections died with the server
    # Then both jobs finish, each once, and no completed stage ran again after its completion was recorded
    done = [assert_invariant(wait_for_job(job, timeout=90)["id"], status="completed", reruns_allowed=True)
            for job in (fanout, chain)]
    measure("PostgreSQL restart: both jobs completed after", time.monotonic() - restarted)
    assert [i["square"] for i in done[0]["result"]["final"]] == [i * i for i in range(6)]
    assert done[1]["result"]["final"]["tag"] == "postgres restart"
    assert worker.process.poll() is None
