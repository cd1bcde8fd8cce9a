"""``GET /api/jobs/{id}/events``: the job's changes as Server-Sent Events.

The stream starts with the job as it is now (a ``status`` event), then sends ``progress``,
``stage`` and ``status`` events, each carrying the whole job JSON, and ends after a terminal
status. Notices come from :mod:`pipelines.services.streams` (Redis pub/sub shared by all streams of
the process through one connection, or in-process queues without Redis); on each, the job is
read again (one query), so a lost or merged notice never leaves a client with stale data. A comment
line after 15 s without a write keeps proxies from closing the connection, and lets the server
notice a client that left. Under gunicorn's gevent worker each open stream is a greenlet, so
one web process holds hundreds of them.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from flask import Response, stream_with_context
from flask_openapi3 import APIBlueprint, Tag

from conveyor.errors import JobNotFound
from conveyor.statuses import TERMINAL
from pipelines.services import streams
from pipelines.services.jobs import get_job, get_jobs
from web.auth import current_user_id
from web.schemas import JobPath, ProblemOut

#: Named "events" still: flask-openapi3 builds the operationId of the API contract from it.
bp = APIBlueprint("events", __name__, url_prefix="/api/jobs", abp_tags=[Tag(name="jobs")],
                  abp_security=[{"bearer": []}], abp_responses={401: ProblemOut})

#: s of silence after which a keep-alive comment is sent.
KEEP_ALIVE = 15.0
#: s a stream stays open at most; EventSource reconnects by itself.
MAX_STREAM_SECONDS = 30 * 60
#: ms a browser waits before reconnecting a dropped stream.
RECONNECT_MS = 3000
#: s a job read waits for others to share its query (see :class:`SharedReads`).
BATCH_WAIT = 0.003
#: s between a stream's checks that the process is shutting down (a stream ends within this).
CLOSE_POLL = 2.0
#: ms a client is told to wait before reconnecting when the process shuts down (to another process).
CLOSING_RETRY_MS = 1000

_closing = threading.Event()
_open_streams = 0
_open_lock = threading.Lock()


def begin_shutdown() -> None:
    """The process is stopping (SIGTERM): every open stream ends at its next event or poll, cleanly.

    Each sends a ``retry:`` hint and a comment and closes, before gunicorn's graceful timeout would
    cut it mid-event; EventSource reconnects (to another process) by itself.
    """
    _closing.set()


def shutting_down() -> bool:
    return _closing.is_set()


def open_streams() -> int:
    """Event streams open in this process."""
    return _open_streams


def _closing_message() -> str:
    return f"retry: {CLOSING_RETRY_MS}\n: the server is restarting; reconnect\n\n"


@dataclass(frozen=True)
class Snapshot:
    """A job as read once, and its JSON text (encoded once for every stream that shares the read)."""

    job: dict[str, Any]
    data: str


@dataclass
class _Read:
    started: float
    done: threading.Event = field(default_factory=threading.Event)
    snapshot: Snapshot | None = None
    error: Exception | None = None


class SharedReads:
    """Job reads shared by the streams of this process that got the same notice, and batched.

    A notice reaches each stream following the job; without sharing, N streams would read the
    same row N times at once. A read that *started* after the notice arrived reflects the change
    it announces (notices are published after commit), so a stream may take such a read's
    result instead of making its own. Notices of many jobs often come in a burst (one worker
    transaction, or many jobs moving at once): the reads asked for within :data:`BATCH_WAIT` of
    each other are made by one query, so a burst costs the process one read, not one per job.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reads: dict[tuple[str, str], _Read] = {}
        self.pending: dict[tuple[str, str], _Read] = {}  #: reads not yet made, for the next batch

    def after(self, job_id: str, user_id: str, since: float) -> Snapshot:
        key = (job_id, user_id)
        collector = False
        with self.lock:
            current = self.reads.get(key)
            # A read still pending has not queried yet, so it will reflect this notice too.
            if current is None or (current.started < since and key not in self.pending):
                current = self.reads[key] = self.pending[key] = _Read(started=time.monotonic())
                collector = len(self.pending) == 1  # the first read of a batch makes the batch's query
        if collector:
            time.sleep(BATCH_WAIT)  # streams woken by the same burst join this batch meanwhile
            with self.lock:
                batch, self.pending = self.pending, {}
            self._read(batch)
        current.done.wait()
        if current.error is not None:
            raise current.error
        assert current.snapshot is not None
        return current.snapshot

    @staticmethod
    def _read(batch: dict[tuple[str, str], _Read]) -> None:
        failure: Exception | None = None
        try:
            jobs = get_jobs(list(batch))
        except Exception as exc:  # shared with every stream of the batch, raised in each
            jobs, failure = {}, exc
        for key, read in batch.items():
            job = jobs.get(key)
            if job is not None:
                read.snapshot = snapshot_of(job)
            else:
                read.error = failure or JobNotFound(key[0])
            read.done.set()

    def forget(self, job_id: str, user_id: str) -> None:
        """Drop the job's finished read (a stream of it ended)."""
        with self.lock:
            read = self.reads.get((job_id, user_id))
            if read is not None and read.done.is_set():
                self.reads.pop((job_id, user_id), None)


shared_reads = SharedReads()


#: One event of the stream, as the OpenAPI document describes it (before 3.2, ``schema`` describes an event).
EVENT_SCHEMA = {
    "type": "object",
    "properties": {
        "event": {"type": "string", "enum": ["progress", "stage", "status"]},
        "data": {"type": "string", "contentMediaType": "application/json", "description": "The job, as JSON."},
        "retry": {"type": "integer", "description": "Milliseconds a client waits before reconnecting."},
        "id": {"type": "string"},
    },
    "required": ["event", "data"],
}


def snapshot_of(job: dict[str, Any]) -> Snapshot:
    return Snapshot(job, json.dumps(job, separators=(",", ":")))


def sse(kind: str, snapshot: Snapshot) -> str:
    return f"event: {kind}\ndata: {snapshot.data}\n\n"


def job_stream(job_id: str, user_id: str, *, keep_alive: float = KEEP_ALIVE,
               max_seconds: float = MAX_STREAM_SECONDS) -> Iterator[str]:
    """The event stream's text; subscribes before the first read so no change falls in between."""
    global _open_streams
    deadline = time.monotonic() + max_seconds
    with _open_lock:
        _open_streams += 1
    try:
        yield from _stream(job_id, user_id, keep_alive, deadline)
    finally:
        with _open_lock:
            _open_streams -= 1
        shared_reads.forget(job_id, user_id)


def _stream(job_id: str, user_id: str, keep_alive: float, deadline: float) -> Iterator[str]:
    with streams.subscribe(job_id, timeout=min(keep_alive, CLOSE_POLL)) as notices:
        last = snapshot_of(get_job(job_id, user_id=user_id))
        yield f"retry: {RECONNECT_MS}\n" + sse("status", last)
        written = time.monotonic()
        if last.job["status"] in TERMINAL:
            return
        for notice in notices:
            if _closing.is_set():
                yield _closing_message()
                return
            if notice is not None:
                try:
                    current = shared_reads.after(job_id, user_id, notice.get("received_at", time.monotonic()))
                except JobNotFound:
                    return
                # A status change is sent as a status event even when a stage notice came first.
                status = current.job["status"]
                kind = "status" if status != last.job["status"] else notice.get("event", "progress")
                if current.data != last.data or kind != "progress":
                    yield sse(kind, current)
                    last, written = current, time.monotonic()
                if status in TERMINAL:
                    return
            # Silence on the wire, not between notices: notices that change nothing write nothing, and
            # a client that left is only noticed when its stream is written to.
            if time.monotonic() - written >= keep_alive:
                yield ": keep-alive\n\n"
                written = time.monotonic()
            if time.monotonic() > deadline:
                return


@bp.get("/<job_id>/events", summary="Follow a job's progress (Server-Sent Events)",
        responses={200: {"description": "`text/event-stream` of `progress`, `stage` and `status` events, each "
                                        "with the job JSON; ends after a terminal status.",
                         "content": {"text/event-stream": {"schema": EVENT_SCHEMA}}},
                   404: ProblemOut},
        description="Authenticate with the Authorization header, or (browsers' EventSource) with the `access` "
                    "parameter of a URL from `POST /api/jobs/{job_id}/events/grant`.")
def job_events(path: JobPath) -> Response:
    user_id = current_user_id()
    get_job(path.job_id, user_id=user_id)  # 404 before the stream starts
    response = Response(stream_with_context(job_stream(path.job_id, user_id)), mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"  # nginx: pass events through at once
    return response
