"""A job's stage ends that come while its row is locked share one transaction; if it fails, every
member is told to record its end alone."""

from __future__ import annotations

import threading
import time

import pytest

from pipelines.engine.dispatch import Outbox
from pipelines.engine.groupcommit import GroupCommit
from pipelines.services.jobs import get_job, start_job
from pipelines.store.db import get_engine
from pipelines.store.jobrow import lock_job

ITEMS = 3


def _adds(job_id: str, value: int, sessions: list[int], *, fails: bool = False):
    """A record that adds ``value`` to the job's errors list, noting its transaction's session."""
    def record(session) -> Outbox:
        sessions.append(id(session))
        job = lock_job(session, job_id)
        assert job is not None, "the job is created before its records run"
        job.errors = [*(job.errors or []), {"item": value}]
        if fails:
            raise RuntimeError("this record fails")
        return Outbox()
    return record


def _record_while_the_row_is_locked(group: GroupCommit, job_id: str, records) -> list[bool]:
    """Start every record while another transaction holds the database's write lock, then release it;
    returns what each ``record`` call answered."""
    answers: list[bool] = []
    holder = get_engine().connect()
    holder.exec_driver_sql("SELECT 1")  # begins with SQLite's write lock, held as a job row lock would be
    threads = [threading.Thread(target=lambda r=record: answers.append(group.record(job_id, r)))
               for record in records]
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
    return answers


@pytest.fixture
def job_id(db, stub_broker) -> str:
    return start_job(pipeline="demo", input={"items": 2})["id"]


def _values(job_id: str) -> list[int]:
    return sorted(e["item"] for e in get_job(job_id)["errors"] or [])


def test_ends_that_come_while_the_first_waits_for_the_row_lock_share_its_transaction(job_id):
    sessions: list[int] = []
    answers = _record_while_the_row_is_locked(GroupCommit(), job_id,
                                              [_adds(job_id, i, sessions) for i in range(ITEMS)])
    assert answers == [True] * ITEMS
    assert len(sessions) == ITEMS and len(set(sessions)) == 1
    assert _values(job_id) == list(range(ITEMS))


def test_when_one_record_fails_the_batch_tells_every_member_to_record_alone(job_id):
    sessions: list[int] = []
    records = [_adds(job_id, i, sessions, fails=i == 1) for i in range(ITEMS)]
    answers = _record_while_the_row_is_locked(GroupCommit(), job_id, records)
    # Nothing of the batch was kept, and every member knows it must record its end alone
    assert answers == [False] * ITEMS
    assert _values(job_id) == []


def test_a_lone_end_is_recorded_at_once_and_its_failure_reaches_its_caller(job_id):
    sessions: list[int] = []
    group = GroupCommit()
    assert group.record(job_id, _adds(job_id, 7, sessions)) is True
    with pytest.raises(RuntimeError, match="this record fails"):
        group.record(job_id, _adds(job_id, 8, sessions, fails=True))
    assert _values(job_id) == [7] and not group._open
