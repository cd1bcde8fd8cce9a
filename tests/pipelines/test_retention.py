"""The clock's clean-up: expired jobs go with every file their stages stored, listed or not."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from actors.files.storage import get_storage, job_folder
from conveyor.errors import JobNotFound
from pipelines.services.clock import cleanup_expired
from pipelines.services.jobs import get_job, start_job
from pipelines.store.db import transaction
from pipelines.store.models import Job, utcnow
from tests.support.jobs import wait_for_job


def test_an_expired_job_goes_with_its_intermediate_files_and_a_recent_one_stays(stub_worker):
    # Given two finished jobs, each with an intermediate file no result lists (like a lecture's chunk WAVs)
    old, recent = (start_job(pipeline="noop_chain", input={})["id"] for _ in range(2))
    for job_id in (old, recent):
        wait_for_job(job_id)
        get_storage().put_bytes(f"{job_folder(job_id)}/chunk-7.wav", b"RIFF....WAVE")
    # And the first finished 40 days ago
    with transaction() as session:
        session.execute(update(Job).where(Job.id == old).values(finished_at=utcnow() - timedelta(days=40)))
    # When the clean-up runs with a 30-day retention
    report = cleanup_expired(retention_days=30)
    # Then the old job and its file are gone; the recent job and its file stay
    assert report.jobs == 1 and report.files >= 1
    with pytest.raises(JobNotFound):
        get_job(old)
    assert not get_storage().exists(f"{job_folder(old)}/chunk-7.wav")
    assert get_job(recent)["status"] == "completed"
    assert get_storage().exists(f"{job_folder(recent)}/chunk-7.wav")
