"""``GET /api/jobs/{id}/events``: the job's changes as Server-Sent Events.

The stream starts with the job as it is now (a ``status`` event), then sends ``progress``,
``stage`` and ``status`` events, each carrying the whole job JSON, and ends after a terminal
status. Notices come from :mod:`pipelines.events` (Redis pub/sub, or in-process when
embedded); on each, the job is read again (one query), so a lost or merged notice never
leaves a client with stale data. A comment line every 15 s of silence keeps proxies from
closing the connection. Under gunicorn's gevent worker each open stream is a greenlet, so
one web process holds hundreds of them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from flask import Response, stream_with_context
from flask_openapi3 import APIBlueprint, Tag

from pipelines import events
from pipelines.jobs import JobNotFound, get_job
from pipelines.models import TERMINAL_JOB
from web.auth import current_user_id
from web.schemas import JobPath, ProblemOut

bp = APIBlueprint("events", __name__, url_prefix="/api/jobs", abp_tags=[Tag(name="jobs")],
                  abp_security=[{"bearer": []}], abp_responses={401: ProblemOut})

#: s of silence after which a keep-alive comment is sent.
KEEP_ALIVE = 15.0
#: s a stream stays open at most; EventSource reconnects by itself.
MAX_STREAM_SECONDS = 30 * 60
#: ms a browser waits before reconnecting a dropped stream.
RECONNECT_MS = 3000


def sse(kind: str, job: dict[str, Any]) -> str:
    return f"event: {kind}\ndata: {json.dumps(job, separators=(',', ':'))}\n\n"


def job_stream(job_id: str, user_id: str, *, keep_alive: float = KEEP_ALIVE,
               max_seconds: float = MAX_STREAM_SECONDS) -> Iterator[str]:
    """The event stream's text; subscribes before the first read so no change falls in between."""
    deadline = time.monotonic() + max_seconds
    with events.subscribe(job_id, timeout=keep_alive) as notices:
        job = get_job(job_id, user_id=user_id)
        yield f"retry: {RECONNECT_MS}\n" + sse("status", job)
        if job["status"] in TERMINAL_JOB:
            return
        last = job
        for notice in notices:
            if notice is None:
                yield ": keep-alive\n\n"
            else:
                try:
                    job = get_job(job_id, user_id=user_id)
                except JobNotFound:
                    return
                # A status change is sent as a status event even when a stage notice came first.
                kind = "status" if job["status"] != last["status"] else notice.get("event", "progress")
                if job != last or kind != "progress":
                    yield sse(kind, job)
                    last = job
                if job["status"] in TERMINAL_JOB:
                    return
            if time.monotonic() > deadline:
                return


@bp.get("/<job_id>/events", summary="Follow a job's progress (Server-Sent Events)",
        responses={200: {"description": "`text/event-stream` of `progress`, `stage` and `status` events, each "
                                        "with the job JSON; ends after a terminal status.",
                         "content": {"text/event-stream": {"schema": {"type": "string"}}}},
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
