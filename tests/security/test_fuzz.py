"""Case 20: fuzzing the REST API from its own OpenAPI document with schemathesis, authenticated, in-process.

Every operation of ``/api/openapi.json`` gets generated requests: valid ones (positive), invalid
ones (negative, for operations that take parameters or a body), and valid ones aimed at a job and a
file that exist and belong to the caller (so the handlers behind a 404 run too). Every answer must
be no 5xx, a status the document lists, of a documented media type, and match its schema.
``CONVEYOR_FUZZ_EXAMPLES`` sets the examples per operation and mode (100 by default, a bounded run
that fits CI; raise it for a deeper search).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from web.app import create_app

EXAMPLES = int(os.environ.get("CONVEYOR_FUZZ_EXAMPLES", "100"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]
SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "lecture.mp3"
SPEC = create_app({"TESTING": True, "RATELIMIT_STORAGE_URI": "memory://"}).api_doc
OPERATIONS = [(method.upper(), path, operation) for path, item in SPEC["paths"].items()
              for method, operation in item.items()]


def cases() -> list[Any]:
    params = []
    for method, path, operation in OPERATIONS:
        name = f"{method} {path}"
        params.append(pytest.param(method, path, "positive", id=f"{name}-positive"))
        if operation.get("parameters") or operation.get("requestBody"):
            params.append(pytest.param(method, path, "negative", id=f"{name}-negative"))
        if "{job_id}" in path or "{file_id}" in path:
            params.append(pytest.param(method, path, "own-ids", id=f"{name}-own-ids"))
    return params


def own_ids(client, auth) -> dict[str, str]:
    """A job (canceled, so its event stream ends) and an uploaded file, both the caller's."""
    job = client.post("/api/jobs", json={"pipeline": "demo", "input": {"items": 1}}, headers=auth).get_json()
    client.post(f"/api/jobs/{job['id']}/cancel", headers=auth)
    stored = client.post("/api/files", data={"file": (io.BytesIO(SAMPLE.read_bytes()), "a.mp3")}, headers=auth,
                         content_type="multipart/form-data").get_json()
    return {"job_id": job["id"], "file_id": stored["id"]}


@pytest.mark.parametrize(("method", "path", "mode"), cases())
def test_no_request_gets_a_server_error_or_an_answer_outside_the_schema(app, client, auth, method, path, mode):
    operation = schemathesis.openapi.from_wsgi("/api/openapi.json", app)[path][method]
    if mode == "own-ids":
        ids = own_ids(client, auth)
        names = [p.name for p in operation.path_parameters]
        strategy = operation.as_strategy(path_parameters={n: ids[n] for n in names})
    else:
        strategy = operation.as_strategy(generation_mode=GenerationMode(mode))

    @given(case=strategy)
    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def check(case) -> None:
        case.call_and_validate(headers=auth, checks=CHECKS)

    check()


def test_every_operation_is_fuzzed():
    assert len(OPERATIONS) >= 15
    assert {("POST", "/api/jobs"), ("POST", "/api/files"), ("GET", "/api/jobs/{job_id}/events")} <= \
        {(m, p) for m, p, _ in OPERATIONS}
