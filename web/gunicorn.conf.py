"""gunicorn settings of ``conveyor web`` (production).

gevent workers: a request is a greenlet, not a thread, so an open event stream costs a few
kilobytes and waits on Redis pub/sub without blocking anything; one process holds hundreds of
streams while it keeps answering polls. psycopg 3 and redis-py yield to other greenlets once
gevent has patched the standard library, which its worker does before loading the app.
"""

from __future__ import annotations

from conveyor.config import settings

worker_class = "gevent"
workers = settings().web_concurrency
#: Open connections (event streams included) per worker process.
worker_connections = settings().web_worker_connections
bind = f"0.0.0.0:{settings().port}"
keepalive = 5
timeout = 30
graceful_timeout = 20
accesslog = settings().web_access_log
#: Access lines with grant (?access=) and refused ?token= values replaced by [redacted].
logger_class = "web.accesslog.RedactingLogger"
errorlog = "-"
forwarded_allow_ips = settings().forwarded_allow_ips
control_socket_disable = True


def post_fork(server, worker) -> None:  # noqa: ANN001 - gunicorn's hook signature
    """With ``--preload``, drop database connections inherited from the master.

    Nothing is imported here: this hook runs before the gevent worker patches the standard
    library, and a module imported now (psycopg, redis) would block the whole worker on I/O.
    """
    import sys

    db = sys.modules.get("pipelines.store.db")
    if db is not None:
        db.dispose_all()


def post_worker_init(worker) -> None:  # noqa: ANN001 - gunicorn's hook signature
    """Move the loaded app's objects out of the garbage collector's sight.

    A gevent worker is one thread for every request and stream: a full collection walking the
    hundreds of thousands of objects left by importing the app stalls them all at once (tens of
    milliseconds). Frozen objects are never collected, and they live as long as the worker anyway.
    """
    import gc

    gc.collect()
    gc.freeze()
    _end_streams_on_sigterm()


def _end_streams_on_sigterm() -> None:
    """On SIGTERM, end open event streams cleanly (a ``retry:`` hint) before the graceful timeout.

    gunicorn's own handler stops the worker from accepting; it is called after ours. Without this,
    streams were cut mid-chunk when ``graceful_timeout`` ran out.
    """
    import signal
    import sys

    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum, frame) -> None:  # noqa: ANN001 - a signal handler's signature
        stream = sys.modules.get("web.stream")
        if stream is not None:
            stream.begin_shutdown()
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)
