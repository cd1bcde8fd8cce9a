"""The job event stream (Server-Sent Events) and its signed grants for EventSource."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from tests.support.jobs import wait_for_job
from tests.support.web import submit


def read_events(response, *, limit: float = 30.0) -> list[tuple[str, dict]]:
    """Parse a streamed SSE response until it ends."""
    events, buffer, deadline = [], "", time.monotonic() + limit
    for chunk in response.response:
        buffer += chunk.decode() if isinstance(chunk, bytes) else chunk
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(":"))
            if "event" in fields:
                events.append((fields["event"], json.loads(fields["data"])))
        assert time.monotonic() < deadline, "the stream did not end"
    return events


@contextmanager
def job_reads() -> Iterator[list[str]]:
    """The SQL statements that read ``jobs`` while the block runs."""
    from sqlalchemy import event

    from pipelines.store.db import get_engine

    statements: list[str] = []

    def count(conn, cursor, statement, *args) -> None:
        if "FROM jobs" in statement:
            statements.append(statement)

    event.listen(get_engine(), "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(get_engine(), "before_cursor_execute", count)


def test_the_stream_sends_progress_and_ends_after_the_terminal_status(client, auth, stub_worker):
    # The first stage polls an external wait: the job is processing, and its stream has said so, well
    # before that stage ends. A stage that ends just before the job does is sent as the job's status.
    job = submit(client, auth, input={"items": 3, "sleep": 0.3, "wait_seconds": 0.4})
    response = client.get(f"/api/jobs/{job['id']}/events", headers=auth, buffered=False)
    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-cache"

    events = read_events(response)
    kinds = [kind for kind, _ in events]
    assert kinds[0] == "status"
    assert "progress" in kinds and "stage" in kinds
    assert events[-1][0] == "status" and events[-1][1]["status"] == "completed"
    progress = [data["progress"] for _, data in events]
    assert progress == sorted(progress) and progress[-1] == 100.0
    assert all(data["id"] == job["id"] for _, data in events)


def test_the_stream_of_a_finished_job_sends_it_once_and_ends(client, auth, stub_worker):
    job = submit(client, auth, input={"items": 1})
    wait_for_job(job["id"])
    events = read_events(client.get(f"/api/jobs/{job['id']}/events", headers=auth, buffered=False))
    assert [(k, d["status"]) for k, d in events] == [("status", "completed")]


def test_a_silent_stream_sends_keep_alive_comments(app, auth, user):
    from web.stream import job_stream

    job = submit(app.test_client(), auth, input={"items": 1})  # no worker: it stays pending
    with app.test_request_context():
        stream = job_stream(job["id"], user.id, keep_alive=0.05, max_seconds=0.3)
        chunks = list(stream)
    assert chunks[0].startswith("retry: ") and "event: status" in chunks[0]
    assert ": keep-alive\n\n" in chunks[1:]


def test_notices_that_change_nothing_do_not_hold_back_keep_alive_comments(app, auth, user):
    """A client that left is noticed only when its stream is written to, so quiet must mean on the wire."""
    import threading

    from pipelines.engine import notices
    from web.stream import job_stream

    job = submit(app.test_client(), auth, input={"items": 1})  # no worker: it stays pending
    done = threading.Event()

    def chatter() -> None:  # notices faster than the keep-alive interval, the job unchanged
        while not done.wait(0.01):
            notices.publish(job["id"], "progress")

    talker = threading.Thread(target=chatter, daemon=True)
    talker.start()
    try:
        with app.test_request_context():
            chunks = list(job_stream(job["id"], user.id, keep_alive=0.1, max_seconds=0.5))
    finally:
        done.set()
        talker.join()
    assert chunks[0].startswith("retry: ")
    assert all(chunk == ": keep-alive\n\n" for chunk in chunks[1:])  # no event: nothing changed
    assert 3 <= len(chunks) - 1 <= 6


def test_an_event_grant_opens_the_stream_without_the_header(client, auth, stub_worker):
    job = submit(client, auth, input={"items": 1})
    other = submit(client, auth, input={"items": 1})
    grant = client.post(f"/api/jobs/{job['id']}/events/grant", headers=auth)
    assert grant.status_code == 201
    url = grant.get_json()["url"]
    assert url.startswith(f"/api/jobs/{job['id']}/events?access=")
    assert "cvy_" not in url

    events = read_events(client.get(url, buffered=False))
    assert events[-1][1]["status"] == "completed"

    # Not for another job, nor for another route
    value = url.split("access=", 1)[1]
    assert client.get(f"/api/jobs/{other['id']}/events?access={value}").status_code == 401
    assert client.get(f"/api/jobs/{job['id']}?access={value}").status_code == 401


def test_an_expired_event_grant_is_refused(app, client, auth, user):
    job = submit(client, auth, input={"items": 1})

    class HourAgo(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - 3600

    value = URLSafeTimedSerializer(app.config["SECRET_KEY"], salt="conveyor-grant", signer=HourAgo).dumps({"u": user.id, "r": f"events:{job['id']}"})
    response = client.get(f"/api/jobs/{job['id']}/events?access={value}")
    assert response.status_code == 401
    assert "expired" in response.get_json()["detail"]


def test_streams_that_got_the_same_notice_share_one_read_of_the_job(client, auth, user):
    from web.stream import SharedReads

    job = submit(client, auth, input={"items": 1})
    reads = SharedReads()
    with job_reads() as statements:
        # Given a notice that arrived now, 20 streams of the job ask for the job after it
        notice_at = time.monotonic()
        results: list = []
        threads = [threading.Thread(target=lambda: results.append(reads.after(job["id"], user.id, notice_at)))
                   for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        # Then they got the job from far fewer reads than streams
        assert len(results) == 20 and all(r.job["id"] == job["id"] for r in results)
        shared = len(statements)
        assert 1 <= shared < 20

        # And a later notice gets a fresh read
        reads.after(job["id"], user.id, time.monotonic())
        assert len(statements) == shared + 1


def test_reads_of_different_jobs_asked_in_one_burst_are_made_by_one_query(client, auth, user):
    from conveyor.errors import JobNotFound
    from web.stream import SharedReads

    jobs = [submit(client, auth, input={"items": 1}) for _ in range(6)]
    reads = SharedReads()
    with job_reads() as statements:
        # Given notices of six jobs (and of one that is not the user's) arriving together
        notice_at = time.monotonic()
        results: dict[str, object] = {}

        def follow(job_id: str) -> None:
            try:
                results[job_id] = reads.after(job_id, user.id, notice_at).job["id"]
            except JobNotFound as exc:
                results[job_id] = exc

        ids = [j["id"] for j in jobs] + ["not-a-job"]
        threads = [threading.Thread(target=follow, args=(job_id,)) for job_id in ids]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
        # Then each stream got its own job, the unknown one JobNotFound, from fewer queries than jobs
        assert [results[j["id"]] for j in jobs] == [j["id"] for j in jobs]
        assert isinstance(results["not-a-job"], JobNotFound)
        assert 1 <= len(statements) < len(jobs)
