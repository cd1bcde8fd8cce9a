"""The jobs routes of the REST contract, each status code it names, against the real engine."""

from __future__ import annotations

from tests.support.jobs import wait_for_job
from tests.support.web import bearer, submit


def test_a_job_is_accepted_with_202_location_and_retry_after_then_completes(client, auth, stub_worker):
    # When a job is posted
    response = client.post("/api/jobs", json={"pipeline": "demo", "input": {"items": 3}}, headers=auth)

    # Then it is accepted at once, named by Location, with a hint of when to poll
    assert response.status_code == 202
    job = response.get_json()
    assert response.headers["Location"] == f"/api/jobs/{job['id']}"
    assert int(response.headers["Retry-After"]) >= 1
    assert job["status"] == "pending" and job["pipeline"] == "demo"
    assert job["input"]["items"] == 3

    # And the worker finishes it; the finished job has no Retry-After
    wait_for_job(job["id"])
    done = client.get(f"/api/jobs/{job['id']}", headers=auth)
    assert done.status_code == 200
    assert done.get_json()["status"] == "completed"
    assert done.get_json()["result"] == {"double": 10, "negated": -5}
    assert "Retry-After" not in done.headers


def test_an_unfinished_job_sends_retry_after_and_an_etag_that_answers_304(client, auth):
    job = submit(client, auth, input={"items": 1})

    first = client.get(f"/api/jobs/{job['id']}", headers=auth)
    assert first.status_code == 200
    assert first.headers["Retry-After"] == "2"
    etag = first.headers["ETag"]

    again = client.get(f"/api/jobs/{job['id']}", headers={**auth, "If-None-Match": etag})
    assert again.status_code == 304
    assert again.data == b""
    other = client.get(f"/api/jobs/{job['id']}", headers={**auth, "If-None-Match": '"something-else"'})
    assert other.status_code == 200


def test_the_etag_changes_when_the_job_changes(client, auth, stub_worker):
    job = submit(client, auth, input={"items": 1})
    before = client.get(f"/api/jobs/{job['id']}", headers=auth).headers["ETag"]
    wait_for_job(job["id"])
    after = client.get(f"/api/jobs/{job['id']}", headers={**auth, "If-None-Match": before})
    assert after.status_code == 200
    assert after.headers["ETag"] != before


def test_jobs_are_listed_newest_first_with_filters_and_a_cursor(client, auth):
    ids = [submit(client, auth, input={"items": i}, project_id="p1" if i % 2 else None)["id"] for i in range(5)]
    noop = submit(client, auth, "noop_chain", input={"x": 1})["id"]

    everything = client.get("/api/jobs", headers=auth).get_json()
    assert [j["id"] for j in everything["jobs"]] == [noop, *reversed(ids)]
    assert everything["next_cursor"] is None

    first = client.get("/api/jobs?limit=2&pipeline=demo", headers=auth).get_json()
    assert [j["id"] for j in first["jobs"]] == [ids[4], ids[3]]
    second = client.get(f"/api/jobs?limit=2&pipeline=demo&cursor={first['next_cursor']}", headers=auth).get_json()
    assert [j["id"] for j in second["jobs"]] == [ids[2], ids[1]]

    project = client.get("/api/jobs?project_id=p1", headers=auth).get_json()
    assert {j["id"] for j in project["jobs"]} == {ids[1], ids[3]}
    pending = client.get("/api/jobs?status=pending&pipeline=noop_chain", headers=auth).get_json()
    assert [j["id"] for j in pending["jobs"]] == [noop]


def test_bad_list_parameters_answer_422_naming_the_field(client, auth):
    for query, field in (("status=done", "status"), ("limit=0", "limit"), ("limit=abc", "limit"),
                         ("cursor=bm90LWEtY3Vyc29y", "cursor")):
        response = client.get(f"/api/jobs?{query}", headers=auth)
        assert response.status_code == 422, query
        assert response.mimetype == "application/problem+json"
        assert [e["field"] for e in response.get_json()["errors"]] == [field]


def test_a_job_can_be_canceled_once_and_then_answers_409(client, auth):
    job = submit(client, auth, input={"items": 2})

    canceled = client.post(f"/api/jobs/{job['id']}/cancel", headers=auth)
    assert canceled.status_code == 202
    assert canceled.get_json()["status"] == "canceled"

    again = client.post(f"/api/jobs/{job['id']}/cancel", headers=auth)
    assert again.status_code == 409
    assert again.mimetype == "application/problem+json"
    assert "canceled" in again.get_json()["detail"]


def test_retry_resumes_a_failed_job_and_answers_409_for_one_that_did_not_fail(client, auth, stub_worker):
    # Given a strict job whose item fails
    job = submit(client, auth, "demo_strict", input={"items": 2, "fail_items": [1]})
    failed = wait_for_job(job["id"])
    assert failed["status"] == "failed"
    assert failed["error"]["stage"] == "work"

    # When it is retried, it resumes at the failed stage as a second attempt (and fails there again)
    retried = client.post(f"/api/jobs/{job['id']}/retry", headers=auth)
    assert retried.status_code == 202
    assert retried.get_json()["attempt"] == 2
    assert retried.get_json()["status"] == "processing"
    again = wait_for_job(job["id"])
    assert again["status"] == "failed" and again["attempt"] == 2
    assert [s["status"] for s in again["stages"][:2]] == ["completed", "failed"]

    # And a completed job cannot be retried
    completed = submit(client, auth, input={"items": 1})
    wait_for_job(completed["id"])
    conflict = client.post(f"/api/jobs/{completed['id']}/retry", headers=auth)
    assert conflict.status_code == 409
    assert conflict.mimetype == "application/problem+json"


def test_another_users_job_answers_404_exactly_like_a_missing_one(client, auth, other_user):
    job = submit(client, auth, input={"items": 1})
    theirs = bearer(other_user)
    missing = client.get("/api/jobs/00000000-0000-0000-0000-000000000000", headers=theirs)
    for method, path in (("GET", f"/api/jobs/{job['id']}"), ("POST", f"/api/jobs/{job['id']}/cancel"),
                         ("POST", f"/api/jobs/{job['id']}/retry"), ("GET", f"/api/jobs/{job['id']}/events"),
                         ("POST", f"/api/jobs/{job['id']}/events/grant")):
        response = client.open(path, method=method, headers=theirs)
        assert response.status_code == 404, path
        assert response.get_json() == missing.get_json()
    assert client.get("/api/jobs", headers=theirs).get_json()["jobs"] == []


def test_the_same_idempotency_key_and_body_return_the_same_job(client, auth, other_user):
    body = {"pipeline": "demo", "input": {"items": 2}}
    first = client.post("/api/jobs", json=body, headers={**auth, "Idempotency-Key": "k-1"})
    second = client.post("/api/jobs", json=body, headers={**auth, "Idempotency-Key": "k-1"})
    assert first.status_code == second.status_code == 202
    assert first.get_json()["id"] == second.get_json()["id"]

    # A different body under the same key is refused
    changed = client.post("/api/jobs", json={**body, "input": {"items": 3}}, headers={**auth, "Idempotency-Key": "k-1"})
    assert changed.status_code == 422
    assert changed.mimetype == "application/problem+json"

    # Keys are per user
    theirs = client.post("/api/jobs", json=body, headers={**bearer(other_user), "Idempotency-Key": "k-1"})
    assert theirs.status_code == 202
    assert theirs.get_json()["id"] != first.get_json()["id"]


def test_malformed_json_answers_400_as_a_problem(client, auth):
    for data, content_type in (("{not json", "application/json"), ('{"pipeline": "demo"}', "text/plain"), ("", None)):
        headers = {**auth, **({"Content-Type": content_type} if content_type else {})}
        response = client.post("/api/jobs", data=data, headers=headers)
        assert response.status_code == 400, data
        assert response.mimetype == "application/problem+json"
        problem = response.get_json()
        assert problem["status"] == 400 and problem["title"] == "Bad Request"


def test_invalid_bodies_answer_422_naming_each_bad_field(client, auth):
    cases = [
        ({"input": {}}, ["pipeline"]),
        ({"pipeline": "no_such_pipeline", "input": {}}, ["pipeline"]),
        ({"pipeline": "demo", "input": {"items": "many", "sleep": -1}}, ["input.items", "input.sleep"]),
        ({"pipeline": "demo", "input": {"colour": "red"}}, ["input.colour"]),
        ({"pipeline": "demo", "input": [], "surprise": 1}, ["input", "surprise"]),
        # A file input must name an uploaded file or a URL; options a pipeline does not have are refused
        ({"pipeline": "audio_clean", "input": {"audio": "lecture.mp3"}}, ["input.audio"]),
        ({"pipeline": "audio_clean", "input": {"audio": "file:", "gain": 2}}, ["input.audio", "input.gain"]),
        # Every bad field in one answer, whichever check finds it
        ({"pipeline": "demo", "input": {"items": -1}, "project_id": 5}, ["input.items", "project_id"]),
        ({"pipeline": "no_such_pipeline", "input": {}, "project_id": 5}, ["pipeline", "project_id"]),
        ({"pipeline": "demo", "input": {"items": -1}, "webhook_url": "ftp://example.com"},
         ["input.items", "webhook_url"]),
    ]
    for body, fields in cases:
        response = client.post("/api/jobs", json=body, headers=auth)
        assert response.status_code == 422, body
        assert response.mimetype == "application/problem+json"
        assert sorted(e["field"] for e in response.get_json()["errors"]) == sorted(fields), body


def test_webhook_urls_must_be_public_https(client, auth):
    for url in ("http://example.com/hook", "https://127.0.0.1/hook", "https://10.0.0.8/hook", "ftp://example.com"):
        response = client.post("/api/jobs", json={"pipeline": "demo", "input": {}, "webhook_url": url}, headers=auth)
        assert response.status_code == 422, url
        assert [e["field"] for e in response.get_json()["errors"]] == ["webhook_url"]


def test_too_many_job_creations_answer_429_with_retry_after(db, stub_broker, user, other_user):
    from web.app import create_app

    client = create_app({"TESTING": True, "JOB_RATE_LIMIT": "2/minute"}).test_client()
    body = {"pipeline": "demo", "input": {"items": 1}}
    first = client.post("/api/jobs", json=body, headers={**bearer(user), "Idempotency-Key": "first"})
    assert [first.status_code, client.post("/api/jobs", json=body, headers=bearer(user)).status_code] == [202, 202]

    # Over the limit, a repeat of an accepted request still answers its job
    replay = client.post("/api/jobs", json=body, headers={**bearer(user), "Idempotency-Key": "first"})
    assert replay.status_code == 202 and replay.get_json()["id"] == first.get_json()["id"]

    refused = client.post("/api/jobs", json=body, headers=bearer(user))
    assert refused.status_code == 429
    assert refused.mimetype == "application/problem+json"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60

    # The limit is per user, and reading is not limited
    assert client.post("/api/jobs", json=body, headers=bearer(other_user)).status_code == 202
    assert client.get("/api/jobs", headers=bearer(user)).status_code == 200


def test_an_id_of_any_shape_answers_404(client, auth):
    for job_id in ("nope", "x" * 300, "00000000-0000-0000-0000-000000000000"):
        response = client.get(f"/api/jobs/{job_id}", headers=auth)
        assert response.status_code == 404
        assert response.mimetype == "application/problem+json"
