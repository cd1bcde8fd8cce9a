"""``conveyor dev``: the web app and an embedded worker in one process, for one person on one machine."""

from __future__ import annotations

import logging
import signal
import sys
import time

import click
import dramatiq
from werkzeug.serving import WSGIRequestHandler

from conveyor.config import settings
from conveyor.redact import redact_url

logger = logging.getLogger(__name__)


def start_embedded_worker(threads: int) -> dramatiq.Worker:
    """Dramatiq worker threads in this process, on the configured broker (embedded Redis by default)."""
    import pipelines  # noqa: F401 - the broker, the engine's middleware and every pipeline

    broker = dramatiq.get_broker()
    broker.emit_after("process_boot")
    worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=settings().worker_timeout_ms)
    worker.start()
    return worker


def first_user_link(host: str, port: int) -> str | None:
    """On a fresh database, create a user and return the dashboard link that signs it in."""
    from pipelines.users import create_user, user_count

    if user_count():
        return None
    user = create_user("dev")
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return f"http://{shown}:{port}/#token={user.token}"


class RedactingRequestHandler(WSGIRequestHandler):
    """werkzeug's request handler, whose access lines hide grant and ``?token=`` values."""

    def log(self, type: str, message: str, *args: object) -> None:  # noqa: A002 - werkzeug's signature
        super().log(type, "%s", redact_url(message % args if args else message))


def stop_gracefully(*, wait: float = 5.0) -> None:
    """End open event streams cleanly (waiting up to ``wait`` s), then exit."""
    from web import events

    events.begin_shutdown()
    deadline = time.monotonic() + wait
    while events.open_streams() and time.monotonic() < deadline:
        time.sleep(0.05)
    sys.exit(0)


def run_dev(host: str, port: int, threads: int) -> None:
    """Serve the app with a threaded server (event streams hold a thread each) next to the worker."""
    from werkzeug.serving import run_simple

    from web.app import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Exit normally on SIGTERM too, so exit hooks stop the embedded Redis server; open event
    # streams first end cleanly with a retry: hint (they notice within CLOSE_POLL seconds).
    signal.signal(signal.SIGTERM, lambda *_: stop_gracefully())
    worker = start_embedded_worker(threads)
    app = create_app()
    link = first_user_link(host, port)
    click.echo(f"Conveyor is running at http://{host}:{port}/ with {threads} worker threads")
    if link:
        click.echo("A first user 'dev' was created; open this link to sign in (it holds the token):")
        click.echo(link)
    try:
        run_simple(host, port, app, threaded=True, use_reloader=False, use_debugger=False,
                   request_handler=RedactingRequestHandler)
    finally:
        worker.stop()
