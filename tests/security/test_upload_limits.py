"""Issue 14, break 5: uploads are limited per user (count and bytes per hour), and stored files by a quota.

200 parallel uploads all succeeded while job creation allowed 60 a minute. Now uploads answer 429
past ``CONVEYOR_UPLOAD_RATE_LIMIT`` or ``CONVEYOR_UPLOAD_BYTES_PER_HOUR`` and 413 past the user's
``CONVEYOR_USER_QUOTA_BYTES``, each with a problem document whose ``limit`` names the one reached.
"""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy import func, select

from conveyor.config import load_settings, settings
from pipelines.store.db import transaction
from pipelines.store.models import StoredFile
from tests.support.web import bearer

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "lecture.mp3"
SIZE = SAMPLE.stat().st_size


def limited_app(**config):
    from web.app import create_app

    return create_app({"TESTING": True, "RATELIMIT_STORAGE_URI": "memory://", **config})


def upload(client, auth):
    return client.post("/api/files", data={"file": (io.BytesIO(SAMPLE.read_bytes()), "a.mp3")}, headers=auth,
                       content_type="multipart/form-data")


def stored_count() -> int:
    with transaction() as session:
        return session.scalar(select(func.count()).select_from(StoredFile)) or 0


def test_the_upload_limits_have_defaults_and_settings():
    defaults = load_settings({})
    assert defaults.upload_rate_limit == "30/minute"
    assert defaults.upload_bytes_per_hour == 2 * 1024**3 and defaults.user_quota_bytes == 10 * 1024**3
    chosen = load_settings({"CONVEYOR_UPLOAD_RATE_LIMIT": "5/minute", "CONVEYOR_UPLOAD_BYTES_PER_HOUR": "1000",
                            "CONVEYOR_USER_QUOTA_BYTES": "0"})
    assert (chosen.upload_rate_limit, chosen.upload_bytes_per_hour, chosen.user_quota_bytes) == ("5/minute", 1000, 0)


def test_parallel_uploads_past_the_rate_get_429_naming_the_limit(db, stub_broker, user, other_user):
    app = limited_app(UPLOAD_RATE_LIMIT="5/minute")
    alice = bearer(user)

    def one(_: int):
        return upload(app.test_client(), alice)

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(one, range(20)))
    statuses = [a.status_code for a in answers]
    assert statuses.count(201) == 5 and statuses.count(429) == 15
    refused = next(a for a in answers if a.status_code == 429)
    body = refused.get_json()
    assert refused.mimetype == "application/problem+json" and body["limit"] == "upload_rate"
    assert "CONVEYOR_UPLOAD_RATE_LIMIT" in body["detail"] and int(refused.headers["Retry-After"]) >= 1
    assert stored_count() == 5
    assert upload(app.test_client(), bearer(other_user)).status_code == 201  # per user


def test_bytes_per_hour_are_limited(db, stub_broker, user):
    client = limited_app(UPLOAD_BYTES_PER_HOUR=3 * SIZE).test_client()
    statuses = [upload(client, bearer(user)).status_code for _ in range(4)]
    assert statuses[:2] == [201, 201] and statuses[-1] == 429
    refused = upload(client, bearer(user))
    assert refused.get_json()["limit"] == "upload_bytes"


def test_the_storage_quota_is_413_naming_the_limit(db, stub_broker, user, other_user):
    client = limited_app(USER_QUOTA_BYTES=int(2.5 * SIZE)).test_client()
    assert [upload(client, bearer(user)).status_code for _ in range(2)] == [201, 201]
    refused = upload(client, bearer(user))
    assert refused.status_code == 413
    body = refused.get_json()
    assert body["limit"] == "user_quota_bytes" and "CONVEYOR_USER_QUOTA_BYTES" in body["detail"]
    assert stored_count() == 2
    assert upload(client, bearer(other_user)).status_code == 201  # another user's quota is their own


def test_a_chunked_upload_is_held_to_the_quota_by_its_real_size(db, stub_broker, user):
    client = limited_app(USER_QUOTA_BYTES=SIZE + 10).test_client()
    assert upload(client, bearer(user)).status_code == 201
    from werkzeug.datastructures import Headers
    from werkzeug.test import EnvironBuilder

    builder = EnvironBuilder(method="POST", path="/api/files", headers=Headers(bearer(user)),
                             data={"file": (io.BytesIO(SAMPLE.read_bytes()), "a.mp3")})
    environ = builder.get_environ()
    environ.pop("CONTENT_LENGTH", None)
    environ["wsgi.input_terminated"] = True
    response = client.open(environ)
    assert response.status_code == 413 and response.get_json()["limit"] == "user_quota_bytes"
    assert stored_count() == 1


def test_concurrent_uploads_cannot_pass_the_quota_together(db, stub_broker, user):
    app = limited_app(USER_QUOTA_BYTES=int(3.5 * SIZE), UPLOAD_RATE_LIMIT="100/minute")

    def one(_: int) -> int:
        return upload(app.test_client(), bearer(user)).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(one, range(8)))
    assert statuses.count(201) == 3 and statuses.count(413) == 5
    assert stored_count() == 3
    files = list((Path(settings().storage_url[len("file://"):]) / "uploads").rglob("*.mp3"))
    assert len(files) == 3  # the refused uploads' bytes were removed
