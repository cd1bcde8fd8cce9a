"""A job's metadata: any JSON up to 4 KB, returned unchanged, and a filter of the list."""

from __future__ import annotations

from pipelines.services.jobs import MAX_METADATA_BYTES
from tests.support.web import submit

PERSON = {"person_name": "Ada", "voice_name": "Ada's voice", "tags": ["seed", 1], "age": 36}


def test_a_job_returns_its_metadata_unchanged_and_null_without_any(client, auth):
    job = submit(client, auth, "noop_chain", input={"x": 1}, metadata=PERSON)
    assert job["metadata"] == PERSON
    assert client.get(f"/api/jobs/{job['id']}", headers=auth).get_json()["metadata"] == PERSON
    assert submit(client, auth, "noop_chain", input={"x": 1})["metadata"] is None
    assert submit(client, auth, "noop_chain", input={"x": 1}, metadata="just a string")["metadata"] == "just a string"


def test_metadata_over_four_kilobytes_is_refused_with_422_naming_the_field(client, auth):
    # Given metadata whose compact JSON is one byte over the limit (its spaces do not count)
    fits = {"note": "x" * (MAX_METADATA_BYTES - len('{"note":""}'))}
    over = {"note": fits["note"] + "y"}
    assert submit(client, auth, "noop_chain", input={"x": 1}, metadata=fits)["metadata"] == fits
    response = client.post("/api/jobs", json={"pipeline": "noop_chain", "input": {"x": 1}, "metadata": over},
                           headers=auth)
    assert response.status_code == 422 and response.mimetype == "application/problem+json"
    [error] = response.get_json()["errors"]
    assert error["field"] == "metadata" and "4096 bytes" in error["message"]
    # And named beside the request's other bad fields
    both = client.post("/api/jobs", json={"pipeline": "noop_chain", "input": {}, "metadata": over,
                                          "project_id": 5}, headers=auth)
    assert {e["field"] for e in both.get_json()["errors"]} >= {"metadata", "project_id"}


def test_jobs_are_listed_by_an_exact_string_value_of_their_metadata(client, auth, other_user):
    ada = submit(client, auth, "noop_chain", input={"x": 1}, metadata=PERSON)["id"]
    grace = submit(client, auth, "noop_chain", input={"x": 2}, metadata={"person_name": "Grace"})["id"]
    submit(client, auth, "noop_chain", input={"x": 3}, metadata={"person_name": "Ada Lovelace"})
    text_age = submit(client, auth, "noop_chain", input={"x": 4}, metadata={"age": "36", "person_name": 1})["id"]
    submit(client, auth, "noop_chain", input={"x": 5})
    submit(client, {"Authorization": f"Bearer {other_user.token}"}, "noop_chain", input={}, metadata=PERSON)

    def listed(query: str) -> list[str]:
        answer = client.get(f"/api/jobs?{query}", headers=auth)
        assert answer.status_code == 200, answer.get_json()
        return [j["id"] for j in answer.get_json()["jobs"]]

    assert listed("metadata.person_name=Ada") == [ada]
    assert listed("metadata.person_name=Grace&pipeline=noop_chain") == [grace]
    assert listed("metadata.person_name=Ada&metadata.voice_name=Ada%27s%20voice") == [ada]
    assert listed("metadata.person_name=Ada&metadata.voice_name=other") == []
    assert listed("metadata.age=36") == [text_age]  # Ada's age is the number 36, not the string
    assert listed("metadata.person_name=1") == []
    bad = client.get("/api/jobs?metadata.per%20son=Ada", headers=auth)
    assert bad.status_code == 422 and bad.get_json()["errors"][0]["field"] == "metadata.per son"
