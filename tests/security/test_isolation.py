"""Case 14: another user's job or file answers 404 exactly like a missing one; lists show your own only."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from tests.support.jobs import wait_for_job
from tests.support.web import bearer, submit

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "lecture.mp3"
MISSING = "0d8f5c2e-0000-4000-8000-000000000000"


def upload(client, auth) -> dict:
    response = client.post("/api/files", data={"file": (io.BytesIO(SAMPLE.read_bytes()), "mine.mp3")},
                           headers=auth, content_type="multipart/form-data")
    assert response.status_code == 201
    return response.get_json()


def same_as_missing(client, headers, method: str, path: str, missing_path: str) -> None:
    """``path`` (someone else's) answers exactly as ``missing_path`` (nobody's) does: 404, same body."""
    theirs = client.open(path, method=method, headers=headers)
    nobody = client.open(missing_path, method=method, headers=headers)
    assert theirs.status_code == 404, (method, path, theirs.status_code)
    assert theirs.mimetype == "application/problem+json"
    assert theirs.get_json() == nobody.get_json()
    assert "ETag" not in theirs.headers and "Retry-After" not in theirs.headers


@pytest.fixture
def alices(client, auth, stub_worker):
    """Alice's things: a finished job whose result is a file, a failed job, an unfinished job and an upload."""
    stored = upload(client, auth)
    finished = submit(client, auth, "noop_chain", input={"audio": f"file:{stored['id']}"}, project_id="secret")
    failed = submit(client, auth, "demo_strict", input={"items": 1, "fail_items": [0]}, project_id="secret")
    done, broke = wait_for_job(finished["id"]), wait_for_job(failed["id"])
    assert done["status"] == "completed" and broke["status"] == "failed"
    pending = submit(client, auth, "demo", input={"items": 40, "sleep": 1})  # ~10 s, stops at once on cancel
    yield {"file": stored, "finished": done, "failed": broke, "pending": pending}
    client.post(f"/api/jobs/{pending['id']}/cancel", headers=auth)
    wait_for_job(pending["id"])


JOB_ROUTES = [("GET", "/api/jobs/{id}"), ("POST", "/api/jobs/{id}/cancel"), ("POST", "/api/jobs/{id}/retry"),
              ("GET", "/api/jobs/{id}/events"), ("POST", "/api/jobs/{id}/events/grant")]


@pytest.mark.parametrize("which", ["finished", "failed", "pending"])
@pytest.mark.parametrize(("method", "route"), JOB_ROUTES, ids=[f"{m} {r}" for m, r in JOB_ROUTES])
def test_another_users_job_answers_404_like_a_missing_one(client, alices, other_user, method, route, which):
    job_id = alices[which]["id"]
    same_as_missing(client, bearer(other_user), method, route.format(id=job_id), route.format(id=MISSING))


def test_bobs_attempts_change_nothing_of_alices_jobs(client, auth, alices, other_user):
    bob = bearer(other_user)
    for which in ("finished", "failed", "pending"):
        client.post(f"/api/jobs/{alices[which]['id']}/cancel", headers=bob)
        client.post(f"/api/jobs/{alices[which]['id']}/retry", headers=bob)
    statuses = {w: client.get(f"/api/jobs/{alices[w]['id']}", headers=auth).get_json()["status"]
                for w in ("finished", "failed", "pending")}
    assert statuses["finished"] == "completed" and statuses["failed"] == "failed"
    assert statuses["pending"] in ("pending", "processing")  # not canceled


@pytest.mark.parametrize(("method", "route"), [("GET", "/api/files/{id}"), ("POST", "/api/files/{id}/link")])
def test_another_users_upload_and_result_files_answer_404(client, alices, other_user, method, route):
    result_url = alices["finished"]["result"]["audio"]
    for file_id in (alices["file"]["id"], result_url.rsplit("/", 1)[1]):
        same_as_missing(client, bearer(other_user), method, route.format(id=file_id), route.format(id=MISSING))


def test_a_grant_opens_only_what_it_was_issued_for(client, auth, alices, other_user):
    link = client.post(f"/api/files/{alices['file']['id']}/link", headers=auth).get_json()["link"]
    grant = link.split("access=", 1)[1]
    # Bob's own file cannot be opened with Alice's grant, nor can Alice's other resources
    bobs = upload(client, bearer(other_user))
    assert client.get(f"/api/files/{bobs['id']}?access={grant}").status_code == 401
    assert client.get(f"/api/jobs/{alices['finished']['id']}/events?access={grant}").status_code == 401
    assert client.get(f"/api/jobs/{alices['finished']['id']}?access={grant}").status_code == 401


def test_another_users_file_cannot_be_named_in_a_job(client, alices, other_user):
    response = client.post("/api/jobs", headers=bearer(other_user), json={
        "pipeline": "noise_removal", "input": {"audio": f"file:{alices['file']['id']}"}})
    assert response.status_code == 422
    assert response.get_json()["errors"] == [{"field": "input.audio", "message": "no such file"}]


def test_lists_show_only_your_own_jobs(client, auth, alices, other_user):
    bob = bearer(other_user)
    bobs_job = submit(client, bob, "noop_chain", input={})
    wait_for_job(bobs_job["id"])
    mine = {j["id"] for j in client.get("/api/jobs?limit=100", headers=auth).get_json()["jobs"]}
    assert mine == {alices[w]["id"] for w in ("finished", "failed", "pending")}
    listed = client.get("/api/jobs?limit=100", headers=bob).get_json()
    assert [j["id"] for j in listed["jobs"]] == [bobs_job["id"]]
    # Filters and a cursor taken from Alice's listing reveal nothing of hers
    for query in ("project_id=secret", "pipeline=demo_strict", "status=failed", "status=completed",
                  "pipeline=noop_chain&status=completed"):
        found = {j["id"] for j in client.get(f"/api/jobs?{query}", headers=bob).get_json()["jobs"]}
        assert found <= {bobs_job["id"]}, query
    cursor = client.get("/api/jobs?limit=1", headers=auth).get_json()["next_cursor"]
    after = client.get(f"/api/jobs?limit=100&cursor={cursor}", headers=bob).get_json()["jobs"]
    assert {j["id"] for j in after} <= {bobs_job["id"]}


def test_notifications_and_stats_count_only_your_own_jobs(client, auth, alices, other_user):
    bob = bearer(other_user)
    assert client.get("/api/notifications", headers=bob).get_json()["notifications"] == []
    assert client.get("/api/stats", headers=bob).get_json()["jobs"]["total"] == 0
    assert client.get("/api/stats", headers=auth).get_json()["jobs"]["total"] == 3
    seen = {j["id"] for j in client.get("/api/notifications", headers=auth).get_json()["notifications"]}
    assert seen == {alices["finished"]["id"], alices["failed"]["id"]}


def test_an_idempotency_key_is_scoped_to_its_user(client, auth, other_user):
    body = {"pipeline": "demo", "input": {"items": 1}}
    alice = client.post("/api/jobs", json=body, headers={**auth, "Idempotency-Key": "k-1"}).get_json()
    bob = client.post("/api/jobs", json=body, headers={**bearer(other_user), "Idempotency-Key": "k-1"})
    assert bob.status_code == 202 and bob.get_json()["id"] != alice["id"]
    other_body = client.post("/api/jobs", json={**body, "input": {"items": 2}},
                             headers={**bearer(other_user), "Idempotency-Key": "k-1"})
    assert other_body.status_code == 422  # Bob's own key, reused by Bob: Alice's job is never involved
