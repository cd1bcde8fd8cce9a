"""Uploads sniffed by content with a size limit, downloads as attachments, file references in jobs."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from tests.support.jobs import wait_for_job
from tests.support.web import bearer

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "lecture.mp3"
WAV_HEADER = b"RIFF\x24\x08\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x40\x1f\x00\x00\x80\x3e\x00\x00\x02\x00\x10\x00data\x00\x08\x00\x00"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 64


def upload(client, auth, data: bytes, name: str = "clip.mp3"):
    return client.post("/api/files", data={"file": (io.BytesIO(data), name)}, headers=auth,
                       content_type="multipart/form-data")


def test_an_upload_is_stored_and_downloaded_as_an_attachment(client, auth):
    data = SAMPLE.read_bytes()
    response = upload(client, auth, data, "My lecture (final).mp3")
    assert response.status_code == 201
    stored = response.get_json()
    assert stored["content_type"] == "audio/mpeg"
    assert stored["size"] == len(data)
    assert stored["filename"] == "My lecture (final).mp3"
    assert stored["url"] == f"/api/files/{stored['id']}"

    download = client.get(stored["url"], headers=auth)
    assert download.status_code == 200
    assert download.data == data
    assert download.mimetype == "audio/mpeg"
    assert download.headers["Content-Disposition"].startswith("attachment")
    assert download.headers["X-Content-Type-Options"] == "nosniff"


def test_the_kind_comes_from_the_content_not_the_name(client, auth):
    assert upload(client, auth, WAV_HEADER + b"\x00" * 2048, "notes.txt").get_json()["content_type"] == "audio/wav"
    assert upload(client, auth, PNG, "photo.mp3").get_json()["content_type"] == "image/png"


@pytest.mark.parametrize("data", [b"<!doctype html><script>alert(1)</script>", b"just some text\n" * 20, b"",
                                  b"\x00\x01\x02\x03" * 100, b"%PDF-1.7\n" + b"x" * 100])
def test_html_text_and_unknown_kinds_answer_415(client, auth, data):
    response = upload(client, auth, data, "song.mp3")
    assert response.status_code == 415
    assert response.mimetype == "application/problem+json"


def test_an_upload_over_the_limit_answers_413(db, stub_broker, user):
    from web.app import create_app

    client = create_app({"TESTING": True, "MAX_UPLOAD_BYTES": 1000}).test_client()
    auth = bearer(user)
    assert upload(client, auth, PNG + b"\x00" * 800).status_code == 201
    # Just over the limit: caught while the file is copied
    just_over = upload(client, auth, PNG + b"\x00" * 1000)
    assert just_over.status_code == 413
    assert just_over.mimetype == "application/problem+json"
    # Far over: the request itself is refused before it is read
    far_over = upload(client, auth, PNG + b"\x00" * 200_000)
    assert far_over.status_code == 413
    assert far_over.mimetype == "application/problem+json"


def test_an_upload_without_the_file_field_is_refused(client, auth):
    response = client.post("/api/files", data={"other": (io.BytesIO(PNG), "a.png")}, headers=auth,
                           content_type="multipart/form-data")
    assert response.status_code in (400, 422)
    assert response.mimetype == "application/problem+json"


def test_another_users_file_answers_404(client, auth, other_user):
    stored = upload(client, auth, PNG).get_json()
    assert client.get(stored["url"], headers=bearer(other_user)).status_code == 404
    assert client.post(f"{stored['url']}/link", headers=bearer(other_user)).status_code == 404
    assert client.get("/api/files/00000000-0000-0000-0000-000000000000", headers=auth).status_code == 404


def test_a_job_input_names_an_uploaded_file_and_its_result_links_to_it(client, auth, other_user, stub_worker):
    stored = upload(client, auth, SAMPLE.read_bytes()).get_json()
    job = client.post("/api/jobs", json={"pipeline": "noop_chain", "input": {"audio": f"file:{stored['id']}"}},
                      headers=auth).get_json()
    done = wait_for_job(job["id"])
    assert done["result"] == {"audio": stored["url"]}
    assert client.get(done["result"]["audio"], headers=auth).data == SAMPLE.read_bytes()

    # Another user cannot name it
    refused = client.post("/api/jobs", json={"pipeline": "noop_chain", "input": {"audio": f"file:{stored['id']}"}},
                          headers=bearer(other_user))
    assert refused.status_code == 422
    assert refused.get_json()["errors"][0]["field"] == "input.audio"


def test_a_signed_link_downloads_one_file_without_the_header(client, auth):
    first = upload(client, auth, PNG).get_json()
    second = upload(client, auth, SAMPLE.read_bytes()).get_json()
    link = client.post(f"{first['url']}/link", headers=auth)
    assert link.status_code == 201
    body = link.get_json()
    assert body["content_type"] == "image/png" and body["expires_in"] > 0

    assert client.get(body["link"]).data == PNG
    # The grant opens only its own file, and only unaltered
    grant = body["link"].split("access=", 1)[1]
    assert client.get(f"{second['url']}?access={grant}").status_code == 401
    assert client.get(f"{first['url']}?access={grant[:-2]}xx").status_code == 401
    assert client.get(f"/api/jobs?access={grant}").status_code == 401
