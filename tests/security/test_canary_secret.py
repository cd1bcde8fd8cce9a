"""Case 17: a provider key never leaves the process that uses it, even when the provider echoes it back.

A canary OpenAI key is given to a real worker (``dramatiq pipelines.worker:setup``) and an API process, both on a
real Redis broker (a database number of its own) and a SQLite job store. The transcription provider
(the emulator) answers 500 three times, then 401, each time quoting the key in its error body, at
offsets chosen so that a message cut at 200 characters would cut through the key. The job fails;
its webhook fails and is dead-lettered. Then the key, and every 12-character piece of it, is looked
for in: all log output of both processes (DEBUG level, every library), every Redis key and value
(the dead-letter queue included), every row of every table, every API answer, and every file the
run wrote.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import redis
from flask import Blueprint, jsonify

from tests.emulator import emulator  # noqa: F401 - fixture
from tests.emulator.openai_api import openai_blueprint
from tests.support.services import SECURITY_REDIS_URL, require_service
from tests.support.workers import ROOT, WorkerProcess

#: Tests that flush the security Redis database run on one xdist worker, one after another.
pytestmark = pytest.mark.xdist_group("security_redis")

CANARY = "sk-canary-" + uuid.uuid4().hex
#: Any 12 consecutive characters of the key count as a leak (a truncated message may keep a prefix).
PIECES = [CANARY[i:i + 12] for i in range(len(CANARY) - 11)]
#: Padding before the key in the provider's 500 messages: the key then starts before, at and across
#: the 200th character of the message.
PADDINGS = (130, 160, 185)


def leaks(text: str) -> list[str]:
    return [piece for piece in PIECES if piece in text]


def hooks_blueprint() -> Blueprint:
    bp = Blueprint("hooks", __name__)
    bp.add_url_rule("/hook", "hook", lambda: (jsonify({"error": "down"}), 500), methods=["POST"])
    return bp


def dump_redis(client: redis.Redis) -> dict[str, str]:
    """Every key of the database with its value, whatever its type, as text."""
    dump: dict[str, str] = {}
    for key in client.scan_iter(count=1000):
        kind_bytes = client.type(key)
        assert isinstance(kind_bytes, bytes), "the client is made without decode_responses, so it answers bytes"
        kind = kind_bytes.decode()
        value = {
            "string": lambda k: client.get(k),
            "hash": lambda k: client.hgetall(k),
            "list": lambda k: client.lrange(k, 0, -1),
            "set": lambda k: client.smembers(k),
            "zset": lambda k: client.zrange(k, 0, -1, withscores=True),
            "stream": lambda k: client.xrange(k),
        }.get(kind, lambda k: b"")(key)
        dump[key.decode(errors="replace")] = repr(value)
    return dump


def dump_database(path: Path) -> dict[str, list[tuple]]:
    with sqlite3.connect(path) as connection:
        tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {table: connection.execute(f'SELECT * FROM "{table}"').fetchall() for table in tables}


def every_file(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def broker_db():
    require_service(SECURITY_REDIS_URL, "Redis")
    client = redis.Redis.from_url(SECURITY_REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()


def test_a_canary_key_appears_nowhere_after_a_failing_job(tmp_path, emulator, broker_db):  # noqa: F811
    # Given a provider that fails and quotes the key, a webhook receiver that is down...
    provider = emulator(openai_blueprint(), hooks_blueprint())
    for padding in PADDINGS:
        provider.fail_next("/v1/audio/transcriptions", 500, body={"error": {
            "message": "p" * padding + f"{CANARY} upstream failed", "type": "server_error"}})
    provider.fail_next("/v1/audio/transcriptions", 401, times=50, body={"error": {
        "message": f"Incorrect API key provided: {CANARY}.", "type": "invalid_request_error",
        "code": "invalid_api_key"}})
    # ...and a worker and an API process on Redis holding the key, logging everything
    env = {
        "CONVEYOR_BROKER": "redis", "REDIS_URL": SECURITY_REDIS_URL, "DATABASE_URL": f"sqlite:///{tmp_path / 'jobs.db'}",
        "STORAGE_URL": f"file://{tmp_path / 'files'}", "CONVEYOR_VAR_DIR": str(tmp_path / "var"),
        "OPENAI_API_KEY": CANARY, "OPENAI_BASE_URL": provider.url("/v1"),
        "CONVEYOR_PROVIDER_TRANSCRIBE": "openai", "CONVEYOR_PROVIDER_SUMMARIZE": "openai",
        "CONVEYOR_PIPELINES": "tests.security.canary_setup", "CONVEYOR_LOG_FORMAT": "json",
        "CONVEYOR_FETCH_ALLOW_LOOPBACK": "1",  # test-only: the webhook receiver is on 127.0.0.1
        "CONVEYOR_ENV": "development",
    }
    client_env = {**os.environ, **env}

    def api(*args: str, log: str) -> None:
        with open(tmp_path / log, "ab") as output:
            done = subprocess.run([sys.executable, "-m", "tests.security.canary_client", *args], cwd=ROOT,
                                  env=client_env, stdout=output, stderr=subprocess.STDOUT, timeout=240)
        assert done.returncode == 0, (tmp_path / log).read_text()[-3000:]

    api("setup", str(tmp_path), log="api.log")
    worker = WorkerProcess(threads=2, extra_env=env, log_path=tmp_path / "worker.log")
    try:
        worker.wait_ready(timeout=60)
        # When a job runs into the failing provider and its webhook is dead-lettered
        api("run", str(tmp_path), provider.url("/hook"), log="api.log")
    finally:
        worker.stop()

    # Then the key was really used...
    calls = provider.calls_to("/v1/audio/transcriptions")
    assert {c.fault for c in calls} >= {500, 401}
    assert all(c.headers["authorization"] == f"Bearer {CANARY}" for c in calls)
    answers = json.loads((tmp_path / "responses.json").read_text())
    job = next(json.loads(a["body"]) for a in answers if a["body"].startswith('{"id"'))
    failed = json.loads(answers[2]["body"])
    assert failed["status"] == "failed" and failed["error"]["code"] == "provider_auth", failed["error"]
    # ...and appears in no log line (logs at DEBUG were captured: the evidence of the failure is there)
    logs = (tmp_path / "worker.log").read_text() + (tmp_path / "api.log").read_text()
    assert '"level": "debug"' in logs and job["id"] in logs and "provider error 500" in logs
    assert leaks(logs) == []
    # ...nor in Redis: every key and value, the webhook's dead letter included
    redis_dump = dump_redis(broker_db)
    dead = redis_dump.get("dramatiq:webhooks.XQ.msgs", "")
    assert job["id"] in dead, sorted(redis_dump)
    assert leaks(repr(redis_dump)) == []
    # ...nor in any row of any table (the failed run's error is stored there)
    rows = dump_database(tmp_path / "jobs.db")
    assert {"jobs", "stage_runs", "job_events", "files", "users"} <= set(rows)
    assert "provider_auth" in repr(rows["stage_runs"])
    assert leaks(repr(rows)) == []
    # ...nor in any API answer, error bodies included
    assert any(a["status"] == 409 for a in answers)
    assert leaks(json.dumps(answers)) == []
    # ...nor in any file the run wrote (database journal, storage, logs, scratch)
    for name, data in every_file(tmp_path).items():
        assert leaks(data.decode("latin-1")) == [], name
