"""The Python API the web layer calls: validation, idempotency, ownership, listing with a cursor."""

from __future__ import annotations

import pytest

from pipelines.services.jobs import (
    IdempotencyConflict,
    InvalidJobInput,
    JobNotFound,
    cancel_job,
    get_job,
    list_jobs,
    start_job,
)


def test_an_unknown_pipeline_or_bad_input_is_refused_with_field_errors(db, stub_broker):
    with pytest.raises(InvalidJobInput) as unknown:
        start_job(pipeline="no_such_pipeline", input={})
    assert unknown.value.errors == [{"field": "pipeline", "message": "unknown pipeline 'no_such_pipeline'"}]
    with pytest.raises(InvalidJobInput) as bad:
        start_job(pipeline="demo", input={"items": "many", "surprise": 1})
    assert {e["field"] for e in bad.value.errors} == {"input.items", "input.surprise"}


def test_internal_storage_references_are_never_accepted_from_users(db, stub_broker):
    with pytest.raises(InvalidJobInput) as refused:
        start_job(pipeline="noise_removal", input={"audio": "storage:jobs/someone-else/secret.wav"})
    assert refused.value.errors[0]["field"] == "input.audio"


def test_a_file_reference_must_name_a_file_the_user_owns(db, stub_broker):
    with pytest.raises(InvalidJobInput) as missing:
        start_job(pipeline="noise_removal", input={"audio": "file:0d8f5c2e-0000-4000-8000-000000000000"},
                  user_id="u1")
    assert missing.value.errors == [{"field": "input.audio", "message": "no such file"}]


def test_the_same_idempotency_key_and_body_return_the_same_job(db, stub_broker):
    first = start_job(pipeline="demo", input={"items": 1}, user_id="u1", idempotency_key="k1")
    again = start_job(pipeline="demo", input={"items": 1}, user_id="u1", idempotency_key="k1")
    assert again["id"] == first["id"]
    other_user = start_job(pipeline="demo", input={"items": 1}, user_id="u2", idempotency_key="k1")
    assert other_user["id"] != first["id"]
    with pytest.raises(IdempotencyConflict):
        start_job(pipeline="demo", input={"items": 2}, user_id="u1", idempotency_key="k1")


def test_another_users_job_is_not_found(db, stub_broker):
    job = start_job(pipeline="demo", input={}, user_id="u1")
    assert get_job(job["id"], user_id="u1")["id"] == job["id"]
    with pytest.raises(JobNotFound):
        get_job(job["id"], user_id="u2")
    with pytest.raises(JobNotFound):
        cancel_job(job["id"], user_id="u2")


def test_jobs_are_listed_newest_first_by_pages_with_filters(db, stub_broker):
    ids = [start_job(pipeline="demo", input={"items": i}, user_id="u1", project_id="p")["id"] for i in range(5)]
    start_job(pipeline="demo_strict", input={}, user_id="u1")
    start_job(pipeline="demo", input={}, user_id="u2")
    page, cursor = list_jobs(user_id="u1", pipeline="demo", limit=2)
    seen = [j["id"] for j in page]
    while cursor:
        page, cursor = list_jobs(user_id="u1", pipeline="demo", limit=2, cursor=cursor)
        seen += [j["id"] for j in page]
    assert seen == list(reversed(ids))
    assert len(list_jobs(user_id="u1", project_id="p")[0]) == 5
    assert len(list_jobs(user_id="u1", status="pending")[0]) == 6
    with pytest.raises(InvalidJobInput):
        list_jobs(user_id="u1", status="sleeping")
    with pytest.raises(InvalidJobInput):
        list_jobs(user_id="u1", cursor="not-a-cursor")
