"""Case 13, uploads: the size limit, the kind read from the content, server-made keys, no path traversal."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from sqlalchemy import func, select

from actors.files.storage import get_storage
from pipelines.store.db import transaction
from pipelines.store.models import StoredFile
from tests.support.web import bearer

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "lecture.mp3"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 64
HTML = b"<!DOCTYPE html><html><body><script>fetch('/api/jobs').then(r => r.text()).then(alert)</script>"


def upload(client, auth, data: bytes, name: str = "clip.mp3", content_type: str | None = None):
    part = (io.BytesIO(data), name, content_type) if content_type else (io.BytesIO(data), name)
    return client.post("/api/files", data={"file": part}, headers=auth, content_type="multipart/form-data")


def storage_root() -> Path:
    root = get_storage().local_path("probe")
    assert root is not None
    return root.parent


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


def snapshot(paths: list[Path]) -> dict[Path, int | None]:
    """Each path's modification time, None where there is no file."""
    return {p: (p.stat().st_mtime_ns if p.is_file() else None) for p in paths}


def stored_rows() -> int:
    with transaction() as session:
        return session.scalar(select(func.count()).select_from(StoredFile)) or 0


def storage_key(file_id: str) -> str:
    """The storage key the server chose for upload ``file_id``."""
    with transaction() as session:
        row = session.get(StoredFile, file_id)
        assert row is not None, f"upload {file_id} has a row"
        return row.key


# -- size ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("extra", [1001, 5000, 300_000], ids=["just-over", "over", "far-over"])
def test_an_upload_over_the_limit_answers_413_and_stores_nothing(db, stub_broker, user, tmp_path, extra):
    from web.app import create_app

    client = create_app({"TESTING": True, "MAX_UPLOAD_BYTES": 1000}).test_client()
    before = files_under(tmp_path)
    response = upload(client, bearer(user), PNG[:16] + b"\x00" * extra, "big.png")
    assert response.status_code == 413
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["status"] == 413
    assert stored_rows() == 0
    assert files_under(tmp_path) == before


def test_an_upload_at_the_limit_is_accepted(db, stub_broker, user):
    from web.app import create_app

    client = create_app({"TESTING": True, "MAX_UPLOAD_BYTES": 1000}).test_client()
    response = upload(client, bearer(user), PNG[:16] + b"\x00" * (1000 - 16), "ok.png")
    assert response.status_code == 201 and response.get_json()["size"] == 1000


# -- kind ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", [None, "audio/mpeg", "text/html"])
@pytest.mark.parametrize("data", [HTML, b"\xef\xbb\xbf" + HTML, b"<svg xmlns='http://www.w3.org/2000/svg' "
                                  b"onload='alert(1)'/>", b"#!/bin/sh\nrm -rf /\n", b"MZ\x90\x00" + b"\x00" * 200,
                                  b"PK\x03\x04" + b"\x00" * 200],
                         ids=["html", "html-bom", "svg", "script", "exe", "zip"])
def test_a_renamed_non_media_file_answers_415_whatever_its_name_and_declared_type(
    client, auth, tmp_path, data, content_type
):
    before = files_under(tmp_path)
    response = upload(client, auth, data, "lecture.mp3", content_type)
    assert response.status_code == 415
    assert response.mimetype == "application/problem+json"
    assert stored_rows() == 0
    assert files_under(tmp_path) == before


# -- names -----------------------------------------------------------------------------------------

#: Hostile upload names and the display name each becomes (the storage key never derives from them).
HOSTILE_NAMES = {
    "../../x": "x",
    "..\\x": "x",
    "../../x.mp3": "x.mp3",
    "lecture\x00.php": "lecture.php",
    "a.mp3\x00../../../etc/passwd": "passwd",
    "/etc/passwd": "passwd",
    "....//....//x": "x",
    "..": "upload.mp3",
    "": "upload.mp3",
}


@pytest.mark.parametrize("name", list(HOSTILE_NAMES), ids=[repr(n) for n in HOSTILE_NAMES])
def test_hostile_names_get_a_server_generated_key_inside_the_storage_root(client, auth, user, tmp_path, name):
    # Given the test's folder: the database beside the storage root
    root = storage_root()
    before = files_under(tmp_path)
    # ...and every place the name would lead to if it were used as a path (some exist, e.g. /etc/passwd)
    plain = name.replace("\x00", "").replace("\\", "/")
    derived = [(base / plain).resolve() for base in (root, root / "uploads" / user.id, root / "uploads")]
    derived_before = snapshot(derived)
    data = SAMPLE.read_bytes()
    # When a file is uploaded under a hostile name
    response = upload(client, auth, data, name)
    # Then it is stored under a key the server made, inside the root, and the name is only a display name
    assert response.status_code == 201, response.get_json()
    stored = response.get_json()
    assert stored["filename"] == HOSTILE_NAMES[name]
    assert not set(stored["filename"]) & set("/\\\x00\r\n")
    key = storage_key(stored["id"])
    assert re.fullmatch(rf"uploads/{user.id}/[0-9a-f]{{32}}\.mp3", key), key
    (new,) = files_under(tmp_path) - before
    assert new.resolve() == (root / key).resolve()
    assert new.resolve().is_relative_to(root.resolve())
    assert new.read_bytes() == data
    assert snapshot(derived) == derived_before
    # And the download names it safely
    download = client.get(stored["url"], headers=auth)
    disposition = download.headers["Content-Disposition"]
    assert disposition.startswith("attachment") and "/" not in disposition and "\\" not in disposition
    assert "\r" not in disposition and "\n" not in disposition and "\x00" not in disposition
    assert download.data == data


@pytest.mark.parametrize("path", ["/api/files/../..", "/api/files/..", "/api/files/../../etc/passwd",
                                  "/api/files/..%2F..%2Fetc%2Fpasswd", "/api/files/%2e%2e/%2e%2e",
                                  "/api/files/.%2e/.%2e/jobs.db", "/api/files/..\\..\\jobs.db",
                                  "/api/files/%00", "/api/files/uploads", "/api/files/" + "a" * 5000])
def test_paths_outside_the_files_answer_404(client, auth, path):
    upload(client, auth, SAMPLE.read_bytes())  # there is something to find, for whoever may
    response = client.get(path, headers=auth)
    # A NUL is refused before any lookup (422 on every database: PostgreSQL cannot store it)
    assert response.status_code == (422 if "%00" in path else 404), (path, response.status_code)
    assert response.mimetype == "application/problem+json"
    assert b"root:" not in response.data and b"SQLite" not in response.data


def test_a_storage_key_is_not_a_file_id(client, auth):
    stored = upload(client, auth, SAMPLE.read_bytes()).get_json()
    key = storage_key(stored["id"])
    for guess in (key, key.rsplit("/", 1)[1], key.rsplit("/", 1)[1].split(".")[0]):
        assert client.get(f"/api/files/{guess}", headers=auth).status_code == 404


def test_a_name_with_a_line_break_cannot_inject_a_header(client, auth):
    response = upload(client, auth, SAMPLE.read_bytes(), "name\r\nSet-Cookie: a=b.mp3")
    assert response.status_code in (201, 400)
    assert "Set-Cookie" not in response.headers
    if response.status_code == 201:
        download = client.get(response.get_json()["url"], headers=auth)
        assert "Set-Cookie" not in download.headers
        assert "\n" not in download.headers["Content-Disposition"]
