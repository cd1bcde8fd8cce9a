"""Issue 14, break 3: a NUL character (U+0000) anywhere a request could store it is a 422, on both databases.

PostgreSQL's text and JSON columns cannot hold it, and 12 routes answered 500 there. The same
requests run against PostgreSQL in tests/integration/test_fuzz_postgres.py.
"""

from __future__ import annotations

import base64

import pytest

from conveyor.errors import InvalidJobInput
from pipelines.services.jobs import list_jobs, start_job

NUL_CURSOR = base64.urlsafe_b64encode(b"2026-01-01T00:00:00|\x00").decode()
GETS = ["/api/jobs/%00", "/api/jobs/a%00b", "/api/files/%00", "/api/jobs/%00/events", "/api/jobs?project_id=%00",
        "/api/jobs?pipeline=a%00", "/api/jobs?status=%00", f"/api/jobs?cursor={NUL_CURSOR}", "/api/jobs?x%00=1"]
POSTS = ["/api/jobs/%00/cancel", "/api/jobs/%00/retry", "/api/jobs/%00/events/grant", "/api/files/%00/link"]
BODIES = [{"pipeline": "de\x00mo", "input": {}}, {"pipeline": "demo", "input": {}, "project_id": "\x00"},
          {"pipeline": "demo", "input": {"items": 1, "note\x00": 1}},
          {"pipeline": "lecture_notes", "input": {"audio": "https://example.com/a\x00.mp3"}},
          {"pipeline": "demo", "input": {}, "webhook_url": "https://example.com/\x00"},
          {"pipeline": "translate", "input": {"text": ["a", "b\x00"]}}]


@pytest.mark.parametrize("path", GETS)
def test_a_nul_in_a_path_or_query_is_refused(client, auth, path):
    response = client.get(path, headers=auth)
    assert response.status_code == 422, (path, response.status_code, response.get_data(as_text=True)[:200])
    message = response.get_json()["errors"][0]["message"]
    assert "NUL" in message or "cursor" in message


@pytest.mark.parametrize("path", POSTS)
def test_a_nul_in_an_id_of_a_post_is_refused(client, auth, path):
    response = client.post(path, headers=auth)
    assert response.status_code == 422, (path, response.status_code)


@pytest.mark.parametrize("body", BODIES, ids=range(len(BODIES)))
def test_a_nul_in_a_job_body_is_refused(client, auth, body):
    response = client.post("/api/jobs", json=body, headers=auth)
    assert response.status_code == 422, (body, response.status_code, response.get_json())


def test_a_nul_in_the_idempotency_key_is_refused(client, auth):
    response = client.post("/api/jobs", json={"pipeline": "demo", "input": {}},
                           headers={**auth, "Idempotency-Key": "k\x00"})
    assert response.status_code == 422


def test_the_python_api_refuses_nul_too(db, stub_broker):
    with pytest.raises(InvalidJobInput) as refused:
        start_job(pipeline="demo", input={"label": "a\x00"})
    assert refused.value.errors[0]["field"] == "input.label"
    with pytest.raises(InvalidJobInput):
        list_jobs(user_id=None, project_id="\x00")
    with pytest.raises(InvalidJobInput) as refused:
        start_job(pipeline="demo", input={}, project_id="p\x00", idempotency_key="k\x00")
    assert {e["field"] for e in refused.value.errors} == {"project_id", "Idempotency-Key"}
