"""Issue 14, break 6: tokens can be replaced and revoked, at once in every process, with their grants.

``conveyor users token NAME`` gives a new token (on the last line), ``conveyor users revoke NAME``
revokes the user's token. A process that cached the old token drops it within a second (a Redis
publish), and grants and file links made under the old token stop working.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipelines.services import users
from pipelines.services.users import forget_cached_tokens, user_for_token
from tests.support.services import SECURITY_REDIS_URL, require_service
from tests.support.web import bearer
from web.cli import main

#: Tests that flush the security Redis database run on one xdist worker, one after another.
pytestmark = pytest.mark.xdist_group("security_redis")

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "lecture.mp3"


def cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_users_token_prints_a_new_token_and_the_old_one_stops_working(client, user):
    assert client.get("/api/jobs", headers=bearer(user)).status_code == 200  # cached now
    new = cli("users", "token", "alice").strip().splitlines()[-1]
    assert new.startswith("cvy_") and new != user.token
    assert client.get("/api/jobs", headers=bearer(user)).status_code == 401
    assert client.get("/api/jobs", headers={"Authorization": f"Bearer {new}"}).status_code == 200


def test_users_revoke_revokes_the_token(client, user, other_user):
    assert client.get("/api/jobs", headers=bearer(user)).status_code == 200
    cli("users", "revoke", user.id)
    assert client.get("/api/jobs", headers=bearer(user)).status_code == 401
    assert client.get("/api/jobs", headers=bearer(other_user)).status_code == 200  # others are untouched


def test_an_unknown_user_is_an_error(db):
    result = CliRunner().invoke(main, ["users", "revoke", "nobody"])
    assert result.exit_code != 0 and "no user" in result.output


def test_grants_and_file_links_made_with_an_old_token_stop_working(client, user, auth):
    job = client.post("/api/jobs", json={"pipeline": "demo", "input": {"items": 0}}, headers=auth).get_json()
    stored = client.post("/api/files", data={"file": (io.BytesIO(SAMPLE.read_bytes()), "a.mp3")}, headers=auth,
                         content_type="multipart/form-data").get_json()
    stream = client.post(f"/api/jobs/{job['id']}/events/grant", headers=auth).get_json()["url"]
    link = client.post(f"/api/files/{stored['id']}/link", headers=auth).get_json()["link"]
    assert client.get(link).status_code == 200
    new = cli("users", "token", "alice").strip().splitlines()[-1]
    assert client.get(link).status_code == 401
    assert client.get(stream).status_code == 401
    fresh = client.post(f"/api/files/{stored['id']}/link", headers={"Authorization": f"Bearer {new}"})
    assert client.get(fresh.get_json()["link"]).status_code == 200


WATCHER = textwrap.dedent("""
    import sys, time
    from pipelines.services.users import _listener, user_for_token
    from pipelines.worker import setup
    setup()
    token = sys.argv[1]
    assert user_for_token(token) is not None
    deadline = time.monotonic() + 10
    while not _listener.subscribed.is_set() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert user_for_token(token) is not None  # now from the cache
    print("ready", flush=True)
    deadline = time.monotonic() + 15
    while user_for_token(token) is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    print("revoked" if time.monotonic() < deadline else "still-valid", time.time(), flush=True)
""")


def test_a_revocation_reaches_another_process_within_a_second(tmp_path):
    require_service(SECURITY_REDIS_URL, "Redis")
    env = {**os.environ, "CONVEYOR_BROKER": "redis", "REDIS_URL": SECURITY_REDIS_URL,
           "DATABASE_URL": f"sqlite:///{tmp_path / 'auth.db'}", "STORAGE_URL": f"file://{tmp_path / 'files'}"}
    run = [sys.executable, "-m", "web.cli"]
    subprocess.run([*run, "db", "upgrade"], env=env, check=True, capture_output=True, timeout=60)
    token = subprocess.run([*run, "users", "create", "carol"], env=env, check=True, capture_output=True,
                           text=True, timeout=60).stdout.strip().splitlines()[-1]
    watcher = subprocess.Popen([sys.executable, "-c", WATCHER, token], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert watcher.stdout is not None
        assert watcher.stdout.readline().strip() == "ready"
        subprocess.run([*run, "users", "revoke", "carol"], env=env, check=True, capture_output=True, timeout=60)
        revoked_at = time.time()
        seen = watcher.stdout.readline().split()
        assert seen[0] == "revoked", seen
        assert float(seen[-1]) - revoked_at < 1.0
    finally:
        watcher.kill()
        watcher.wait()


def test_the_cache_is_dropped_at_once_in_this_process(db, user):
    forget_cached_tokens()
    assert user_for_token(user.token) is not None
    cli("users", "revoke", "alice")
    assert user_for_token(user.token) is None


def test_a_read_that_overlaps_a_revocation_does_not_fill_the_cache(db):
    cache: users._RevocableCache[int] = users._RevocableCache()

    def read_while_revoked() -> int:
        cache.clear()  # a revocation heard while the database was being read
        return 7

    # Given an answer read while a revocation came / Then it is returned but not kept
    assert cache.get("alice", read_while_revoked) == 7
    assert cache.get("alice", lambda: 8) == 8
    # And an answer read undisturbed is kept until the next clearing
    assert cache.get("alice", lambda: 9) == 8
    cache.clear()
    assert cache.get("alice", lambda: 9) == 9
    # And "no such user" is never kept
    assert cache.get("bob", lambda: None) is None
    assert cache.get("bob", lambda: 3) == 3
