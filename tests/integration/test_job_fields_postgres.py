"""A job's metadata filter and warnings on PostgreSQL (its JSON operators, its hot path)."""

from __future__ import annotations

import pytest

from pipelines.services.jobs import list_jobs, start_job
from tests.support.jobs import wait_for_job
from tests.support.workers import WorkerProcess


@pytest.fixture
def worker():
    process = WorkerProcess()
    yield process
    process.stop()


def test_jobs_are_listed_by_an_exact_string_value_of_their_metadata_on_postgres():
    user = "metadata-user"
    ada = start_job(pipeline="noop_chain", input={"x": 1}, user_id=user,
                    metadata={"person_name": "Ada", "voice_name": "Ada's voice"})["id"]
    start_job(pipeline="noop_chain", input={"x": 2}, user_id=user, metadata={"person_name": "Grace"})
    numeric = start_job(pipeline="noop_chain", input={"x": 3}, user_id=user, metadata={"age": 36})["id"]
    start_job(pipeline="noop_chain", input={"x": 4}, user_id=user, metadata=["person_name", "Ada"])
    start_job(pipeline="noop_chain", input={"x": 5}, user_id=user)

    def listed(**metadata: str) -> list[str]:
        return [job["id"] for job in list_jobs(user_id=user, metadata=metadata)[0]]

    assert listed(person_name="Ada") == [ada]
    assert listed(person_name="Ada", voice_name="Ada's voice") == [ada]
    assert listed(person_name="Ada", voice_name="Grace") == []
    assert listed(age="36") == []  # a number is not the string "36"
    assert numeric in listed()


def test_a_warning_repeated_by_a_retried_attempt_is_kept_once_on_postgres(worker):
    job = start_job(pipeline="demo", input={"items": 3, "warn_items": [1], "fail_items": [1],
                                            "fail_mode": "transient", "fail_times": 1},
                    metadata={"person_name": "Ada"})
    done = wait_for_job(job["id"], timeout=60)
    assert done["status"] == "completed"
    assert done["warnings"] == [{"code": "demo_warning", "message": "item 1 made do", "stage": "work"}]
    assert done["metadata"] == {"person_name": "Ada"}
