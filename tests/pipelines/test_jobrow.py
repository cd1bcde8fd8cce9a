"""The engine's job row is typed: one field per column of ``jobs``, and nothing else."""

from __future__ import annotations

import pytest

from pipelines.services.jobs import start_job
from pipelines.store.db import transaction
from pipelines.store.jobrow import JOBS, Field, JobRow, lock_job


def test_every_column_of_jobs_is_a_field_of_the_job_row():
    fields = {name for name, value in vars(JobRow).items() if isinstance(value, Field)}
    assert fields == {column.name for column in JOBS.c}


def test_a_locked_row_reads_and_writes_its_fields_and_refuses_a_misspelt_one(db):
    job_id = start_job(pipeline="demo", input={"items": 2})["id"]
    with transaction() as session:
        job = lock_job(session, job_id)
        assert job is not None and job.status == "pending" and job.input["items"] == 2  # deferred, read on use
        job.step = "Checked"
        with pytest.raises(AttributeError):
            job.stpe = "Misspelt"  # type: ignore[attr-defined]
    with transaction() as session:
        again = lock_job(session, job_id)
        assert again is not None and again.step == "Checked"
