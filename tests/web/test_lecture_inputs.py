"""The ``lecture_notes`` and ``subtitles`` inputs over the API: the glossary and a transcript instead of audio."""

from __future__ import annotations

from tests.support.web import submit


def test_the_inputs_are_checked_and_described(client, auth):
    too_many = client.post("/api/jobs", json={"pipeline": "lecture_notes", "input": {
        "transcript": "Some text.", "glossary": [f"term {i}" for i in range(101)]}}, headers=auth)
    assert too_many.status_code == 422 and too_many.get_json()["errors"][0]["field"] == "input.glossary"
    too_long = client.post("/api/jobs", json={"pipeline": "subtitles", "input": {
        "media": "file:x", "glossary": ["x" * 61]}}, headers=auth)
    assert too_long.status_code == 422
    both = client.post("/api/jobs", json={"pipeline": "lecture_notes", "input": {
        "transcript": "Some text.", "audio": "file:x"}}, headers=auth)
    assert both.status_code == 422 and "one of the two" in str(both.get_json())
    huge = client.post("/api/jobs", json={"pipeline": "lecture_notes", "input": {
        "transcript": "x" * 200_001}}, headers=auth)
    assert huge.status_code in (413, 422)
    job = submit(client, auth, "lecture_notes", input={"transcript": "A cell is the unit of life.",
                                                       "glossary": "cell, ATP"})
    assert job["input"]["glossary"] == ["cell", "ATP"]

    spec = client.get("/api/openapi.json").get_json()
    described = next(p for p in client.get("/api/pipelines", headers=auth).get_json()["pipelines"]
                     if p["name"] == "lecture_notes")["input_schema"]["properties"]
    assert described["glossary"]["anyOf"][0]["type"] == "array" and "transcript" in described
    assert spec["openapi"].startswith("3.1")


def test_results_download_under_the_names_of_the_job_and_the_output(client, auth, stub_worker):
    from tests.support.jobs import wait_for_job

    job = submit(client, auth, "lecture_notes", input={"transcript": "A cell is the smallest unit of life. " * 5})
    done = wait_for_job(job["id"], timeout=60)
    assert done["status"] == "completed", done["error"]
    response = client.get(done["result"]["notes_url"], headers=auth)
    assert response.status_code == 200
    assert response.headers["Content-Disposition"] == f"attachment; filename=lecture-notes-{job['id'][:8]}.md"
    assert response.get_data(as_text=True).startswith("# ")


def test_an_output_keeps_its_own_name_in_its_key(db, tmp_path):
    from actors.files.keys import key_of
    from actors.files.storage import output_name, store_output

    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"not really a video")
    for name in ("scene-2.mp4", "subtitles.vtt"):
        assert output_name(key_of(store_output(clip, job_id="job-1", name=name))) == name
    odd = key_of(store_output(clip, job_id="job-1", name="../a b.mp4"))  # not a plain name: not kept
    assert "--" not in odd and odd.endswith(".mp4")
    assert output_name("jobs/j/0123abcd.mp4") == "0123abcd.mp4"  # an output stored before names were kept
