"""A job's stage ends that come while its row is locked share one transaction; a failing one costs
the others nothing."""

from __future__ import annotations

import threading
import time

import pytest

from pipelines.db import get_engine
from pipelines.dispatch import Outbox
from pipelines.groupcommit import GroupCommit
from pipelines.jobrow import lock_job
from pipelines.jobs import get_job, start_job

ITEMS = 3


def _adds(job_id: str, value: int, sessions: list[int], *, fails: bool = False):
    """A record that adds ``value`` to the job's errors list, noting its transaction's session."""
    def record(session) -> Outbox:
        sessions.append(id(session))
        job = lock_job(session, job_id)
        job.errors = [*(job.errors or []), {"item": value}]
        if fails:
            raise RuntimeError("this record fails")
        return Outbox()
    return record


def _record_while_the_row_is_locked(group: GroupCommit, job_id: str, records) -> None:
    """Start every record while another transaction holds the database's write lock, then release it."""
    holder = get_engine().connect()
    holder.exec_driver_sql("SELECT 1")  # begins with SQLite's write lock, held as a job row lock would be
    threads = [threading.Thread(target=group.record, args=(job_id, record)) for record in records]
    try:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while len(getattr(group._open.get(job_id), "records", [])) < len(records):  # all in one batch
            assert time.monotonic() < deadline, "the records never joined one batch"
            time.sleep(0.01)
    finally:
        holder.rollback()
        holder.close()
    for thread in threads:
        thread.join(10)


@pytest.fixture
def job_id(db, stub_broker) -> str:
    return start_job(pipeline="demo", input={"items": 2})["id"]


def _values(job_id: str) -> list[int]:
    return sorted(e["item"] for e in get_job(job_id)["errors"] or [])


def test_ends_that_come_while_the_first_waits_for_the_row_lock_share_its_transaction(job_id):
    sessions: list[int] = []
    _record_while_the_row_is_locked(GroupCommit(), job_id, [_adds(job_id, i, sessions) for i in range(ITEMS)])
    assert len(sessions) == ITEMS and len(set(sessions)) == 1
    assert _values(job_id) == list(range(ITEMS))


def test_a_failing_record_does_not_cost_the_others_theirs(job_id):
    sessions: list[int] = []
    records = [_adds(job_id, i, sessions, fails=i == 1) for i in range(ITEMS)]
    _record_while_the_row_is_locked(GroupCommit(), job_id, records)
    # Tried together once, then each alone: the good ones are recorded, the failing one is not
    assert _values(job_id) == [0, 2]


def test_a_lone_end_is_recorded_at_once_and_a_failure_reaches_its_caller(job_id):
    sessions: list[int] = []
    group = GroupCommit()
    group.record(job_id, _adds(job_id, 7, sessions))
    assert _values(job_id) == [7]
    with pytest.raises(RuntimeError):
        group.record(job_id, _adds(job_id, 8, sessions, fails=True))
    assert _values(job_id) == [7] and not group._open
