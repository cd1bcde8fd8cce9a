"""Case 15: every /api/ route answers 401 to a missing or invalid token, and to a token in the query string."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from web.app import create_app
from web.auth import PUBLIC_BLUEPRINTS, PUBLIC_ENDPOINTS

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "lecture.mp3"
SPEC = create_app({"TESTING": True, "RATELIMIT_STORAGE_URI": "memory://"}).api_doc
#: Every operation of the API that needs a token (the OpenAPI document says which).
PROTECTED = sorted(
    (method.upper(), path.replace("{job_id}", "0d8f5c2e-0000-4000-8000-000000000000")
     .replace("{file_id}", "0d8f5c2e-0000-4000-8000-000000000000"))
    for path, item in SPEC["paths"].items() for method, operation in item.items() if operation.get("security")
)
BAD_HEADERS = {
    "missing": {},
    "empty": {"Authorization": ""},
    "scheme only": {"Authorization": "Bearer"},
    "blank token": {"Authorization": "Bearer    "},
    "wrong token": {"Authorization": "Bearer cvy_not-a-real-token"},
    "basic scheme": {"Authorization": "Basic YWxpY2U6c2VjcmV0"},
    "huge token": {"Authorization": "Bearer " + "A" * 20_000},
    "sql in token": {"Authorization": "Bearer ' OR '1'='1"},
    "non-ascii token": {"Authorization": "Bearer tok\u00e9n"},
}


def test_the_spec_lists_the_routes_checked_here():
    assert len(PROTECTED) >= 12
    assert ("POST", "/api/jobs") in PROTECTED and ("GET", "/api/files/0d8f5c2e-0000-4000-8000-000000000000") in PROTECTED


@pytest.mark.parametrize("kind", list(BAD_HEADERS))
@pytest.mark.parametrize(("method", "path"), PROTECTED, ids=[f"{m} {p}" for m, p in PROTECTED])
def test_a_missing_or_invalid_token_answers_401(client, user, method, path, kind):
    response = client.open(path, method=method, headers=BAD_HEADERS[kind])
    assert response.status_code == 401, (method, path, kind, response.status_code)
    assert response.mimetype == "application/problem+json"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("parameter", ["token", "access_token", "api_key", "apikey", "bearer"])
@pytest.mark.parametrize(("method", "path"), PROTECTED, ids=[f"{m} {p}" for m, p in PROTECTED])
def test_a_valid_token_in_the_query_string_answers_401_even_beside_a_valid_header(
    client, user, auth, method, path, parameter
):
    alone = client.open(f"{path}?{parameter}={user.token}", method=method)
    beside = client.open(f"{path}?{parameter}={user.token}", method=method, headers=auth)
    for response in (alone, beside):
        assert response.status_code == 401, (method, path, parameter, response.status_code)
        assert "Authorization header" in response.get_json()["detail"]


def test_a_valid_token_is_accepted_whatever_the_case_of_the_scheme(client, user):
    for scheme in ("Bearer", "bearer", "BEARER"):
        assert client.get("/api/jobs", headers={"Authorization": f"{scheme} {user.token}"}).status_code == 200


def test_a_token_differing_by_one_character_is_refused(client, user):
    token = user.token
    for forged in (token[:-1], token + "A", token[:-1] + ("A" if token[-1] != "A" else "B"), token.upper()):
        assert client.get("/api/jobs", headers={"Authorization": f"Bearer {forged}"}).status_code == 401


def test_an_access_grant_opens_no_route_other_than_event_streams_and_files(client, auth, user):
    # A grant made for one file, used on every other protected route
    stored = client.post("/api/files", data={"file": (io.BytesIO(SAMPLE.read_bytes()), "a.mp3")}, headers=auth,
                         content_type="multipart/form-data").get_json()
    grant = client.post(f"/api/files/{stored['id']}/link", headers=auth).get_json()["link"].split("access=")[1]
    assert client.get(f"/api/files/{stored['id']}?access={grant}").status_code == 200
    for method, path in PROTECTED:
        if path.startswith("/api/files/") and method == "GET":
            continue
        response = client.open(f"{path}?access={grant}", method=method)
        assert response.status_code == 401, (method, path)


def test_the_openapi_document_and_health_need_no_token(client):
    assert client.get("/api/openapi.json").status_code == 200
    assert client.get("/healthz").status_code in (200, 503)


def test_every_api_route_of_the_app_needs_a_token_except_its_documentation(app, client):
    # Routes outside the OpenAPI document too: every /api/ rule the app serves
    checked = 0
    for rule in app.url_map.iter_rules():
        documentation = rule.endpoint.split(".")[0] in PUBLIC_BLUEPRINTS or rule.endpoint in PUBLIC_ENDPOINTS
        if not rule.rule.startswith("/api/") or documentation:
            continue
        path = rule.rule.replace("<job_id>", "x").replace("<file_id>", "x")
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            assert client.open(path, method=method).status_code == 401, (method, path)
            checked += 1
    assert checked == len(PROTECTED)
