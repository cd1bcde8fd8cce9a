"""Issue 14, break 2: a JSON body has its own limit (1 MB by default), refused with 413 before it is parsed.

Job and webhook bodies shared the 200 MB upload limit: a 50 MB body was parsed and stored three
times. Now a declared Content-Length over ``MAX_JSON_BYTES`` is refused at once, a chunked body
as soon as it passes the limit, lists in input models are bounded, and an input that needs no
resolving is stored once.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from sqlalchemy import select

from conveyor.config import load_settings
from pipelines.store.db import transaction
from pipelines.store.models import Job, StageRun
from web.app import JSONProvider

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "lecture.mp3"


def big_job(size: int) -> bytes:
    return json.dumps({"pipeline": "demo", "input": {"items": 1}, "project_id": "p" * 10,
                       "pad": "x" * size}).encode()


@pytest.fixture
def parses(monkeypatch) -> list[int]:
    """The sizes of the JSON documents the app parses."""
    seen: list[int] = []
    original = JSONProvider.loads

    def loads(self, s, **kwargs):
        seen.append(len(s))
        return original(self, s, **kwargs)

    monkeypatch.setattr(JSONProvider, "loads", loads)
    return seen


def test_the_json_limit_defaults_to_one_megabyte_and_is_configurable():
    assert load_settings({}).max_json_bytes == 1024 * 1024
    assert load_settings({"CONVEYOR_MAX_JSON_BYTES": "5000"}).max_json_bytes == 5000


def test_a_declared_body_over_the_limit_is_refused_before_parsing(client, auth, parses):
    body = big_job(2 * 1024 * 1024)
    response = client.post("/api/jobs", data=body, content_type="application/json", headers=auth)
    parsed = list(parses)
    assert response.status_code == 413
    assert response.mimetype == "application/problem+json"
    assert str(1024 * 1024) in response.get_json()["detail"]
    assert parsed == []


def test_a_chunked_body_over_the_limit_is_cut_off_while_streaming(client, auth, parses):
    body = big_job(2 * 1024 * 1024)
    read = []

    class Stream(io.BytesIO):
        def read(self, size=-1):
            chunk = super().read(size)
            read.append(len(chunk))
            return chunk

    response = client.post("/api/jobs", input_stream=Stream(body), content_type="application/json",
                           headers={**auth, "Transfer-Encoding": "chunked"},
                           environ_overrides={"wsgi.input_terminated": True})
    parsed = list(parses)
    assert response.status_code == 413
    assert parsed == []
    assert sum(read) < 1024 * 1024 + 256 * 1024  # stopped near the limit, not at the end of the body


def test_the_limit_is_the_apps_setting(app, client, auth):
    app.config["MAX_JSON_BYTES"] = 2000
    assert client.post("/api/jobs", data=big_job(3000), content_type="application/json",
                       headers=auth).status_code == 413
    small = client.post("/api/jobs", json={"pipeline": "demo", "input": {"items": 1}}, headers=auth)
    assert small.status_code == 202


def test_uploads_keep_the_upload_limit(client, auth):
    response = client.post("/api/files", data={"file": (io.BytesIO(SAMPLE.read_bytes() + b"\0" * (1024 * 1024)),
                                                        "a.mp3")},
                           headers=auth, content_type="multipart/form-data")
    assert response.status_code == 201, response.get_json()


def test_lists_in_inputs_are_bounded(client, auth):
    response = client.post("/api/jobs", json={"pipeline": "demo", "input": {"fail_items": list(range(501))}},
                           headers=auth)
    assert response.status_code == 422
    assert response.get_json()["errors"][0]["field"] == "input.fail_items"


def test_an_input_with_nothing_to_resolve_is_stored_once(client, auth):
    job = client.post("/api/jobs", json={"pipeline": "demo", "input": {"items": 1}}, headers=auth).get_json()
    with transaction() as session:
        row = session.scalars(select(Job).where(Job.id == job["id"])).one()
        assert row.input == {"items": 1, "sleep": 0.0, "fail_items": [], "fail_mode": "permanent",
                             "fail_times": 1, "wait_seconds": 0.0} or row.input["items"] == 1
        assert row.resolved_input is None
        # and the first step's run reads it from the job instead of keeping a copy
        first = session.scalars(select(StageRun).where(StageRun.job_id == job["id"], StageRun.step == 0)).one()
        assert first.input is None


def test_a_chunked_body_under_the_limit_is_read_whole(client, auth):
    body = json.dumps({"pipeline": "demo", "input": {"items": 1}, "project_id": "chunked"}).encode()
    response = client.post("/api/jobs", input_stream=io.BytesIO(body), content_type="application/json",
                           headers={**auth, "Transfer-Encoding": "chunked"},
                           environ_overrides={"wsgi.input_terminated": True})
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["project_id"] == "chunked"
