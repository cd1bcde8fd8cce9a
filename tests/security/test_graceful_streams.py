"""Issue 14, item 9: on SIGTERM the web process ends open event streams cleanly, with a ``retry:`` hint.

They used to run until gunicorn's graceful timeout and be cut mid-chunk. Now SIGTERM (gunicorn's
worker, or ``conveyor dev``) marks the process as closing; every stream sends ``retry:`` and a
comment and ends within ``CLOSE_POLL`` seconds, well before the graceful timeout (20 s).
"""

from __future__ import annotations

import gc
import runpy
import signal
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from web import stream


@pytest.fixture
def closing():
    yield stream.begin_shutdown
    stream._closing.clear()


def test_an_open_stream_ends_with_a_retry_hint_soon_after_shutdown_begins(client, auth, closing):
    job = client.post("/api/jobs", json={"pipeline": "demo", "input": {"items": 1}}, headers=auth).get_json()
    response = client.get(f"/api/jobs/{job['id']}/events", headers=auth, buffered=False)
    chunks = iter(response.response)
    first = next(chunks)
    assert b"event: status" in (first if isinstance(first, bytes) else first.encode())
    assert stream.open_streams() == 1
    threading.Timer(0.2, closing).start()
    started = time.monotonic()
    rest = b"".join(c if isinstance(c, bytes) else c.encode() for c in chunks)  # ends by itself
    took = time.monotonic() - started
    assert rest.endswith(b"\n\n") and b"retry: 1000\n" in rest, rest
    assert took < stream.CLOSE_POLL + 1.5
    response.close()
    assert stream.open_streams() == 0


def test_gunicorns_sigterm_handler_begins_the_shutdown_then_calls_gunicorns(closing):
    conf = runpy.run_path(str(Path(__file__).resolve().parents[2] / "web" / "gunicorn.conf.py"))
    called = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: called.append(signum))
    try:
        conf["post_worker_init"](SimpleNamespace())
        handler = signal.getsignal(signal.SIGTERM)
        assert callable(handler)
        handler(signal.SIGTERM, None)
        assert stream.shutting_down() and called == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)
        gc.unfreeze()


def test_the_dev_server_stops_after_its_streams_ended(closing):
    from web.devserver import stop_gracefully

    started = time.monotonic()
    with pytest.raises(SystemExit):
        stop_gracefully(wait=5.0)
    assert stream.shutting_down() and time.monotonic() - started < 1.0
