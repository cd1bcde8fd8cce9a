"""``conveyor dev``: the web app and an embedded worker in one process, for one person on one machine."""

from __future__ import annotations

import logging
import re
import signal
import sys
import time
from pathlib import Path

import click
import dramatiq
from werkzeug.serving import WSGIRequestHandler

from conveyor.config import settings
from conveyor.redact import redact_url

logger = logging.getLogger(__name__)


def start_embedded_worker(threads: int) -> dramatiq.Worker:
    """Dramatiq worker threads in this process, on the configured broker (embedded Redis by default)."""
    from pipelines.worker import ensure_setup

    broker = ensure_setup()
    broker.emit_after("process_boot")
    worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=settings().worker_timeout_ms)
    worker.start()
    return worker


def _token_file(name: str) -> Path:
    return Path(settings().var_dir) / "tokens" / (re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "_")


def sign_in_token(name: str) -> str:
    """A working token of the user ``name`` on this machine, for sign-in links.

    The token last made here is kept under ``var/tokens/`` (readable by its owner only) and used again
    while it still works, so each run of ``make dev`` or ``make demo`` does not replace it. Otherwise the
    user gets a new token (its old one stops working), or is created when no user has that name.
    """
    from conveyor.errors import UserNotFound
    from pipelines.services.users import create_user, rotate_token

    token = saved_token(name)
    if token is not None:
        return token
    try:
        user = rotate_token(name)
    except UserNotFound:
        user = create_user(name)
    save_token(name, user.token)
    return user.token


def saved_token(name: str) -> str | None:
    """The sign-in token kept on this machine for ``name``, while it still works."""
    from pipelines.services.users import user_for_token

    path = _token_file(name)
    if not path.is_file():
        return None
    token = path.read_text().strip()
    return token if user_for_token(token) is not None else None


def save_token(name: str, token: str) -> None:
    """Keep ``token`` as the sign-in token of ``name`` on this machine (see :func:`sign_in_token`)."""
    path = _token_file(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(token + "\n")


def sign_in_link(token: str, host: str = "127.0.0.1", port: int | None = None) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return f"http://{shown}:{port or settings().port}/#token={token}"


def first_user_link(host: str, port: int) -> tuple[str, str]:
    """The first user's name and a dashboard link that signs it in (a user ``dev`` is made on a fresh database)."""
    from pipelines.services.users import first_user_name

    name = first_user_name() or "dev"
    return name, sign_in_link(sign_in_token(name), host, port)


class RedactingRequestHandler(WSGIRequestHandler):
    """werkzeug's request handler, whose access lines hide grant and ``?token=`` values."""

    def log(self, type: str, message: str, *args: object) -> None:  # noqa: A002 - werkzeug's signature
        super().log(type, "%s", redact_url(message % args if args else message))


def stop_gracefully(*, wait: float = 5.0) -> None:
    """End open event streams cleanly (waiting up to ``wait`` s), then exit."""
    from web import stream

    stream.begin_shutdown()
    deadline = time.monotonic() + wait
    while stream.open_streams() and time.monotonic() < deadline:
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
    from pipelines.services.users import first_user_name

    existing = first_user_name()
    replaced = existing is not None and saved_token(existing) is None
    name, link = first_user_link(host, port)
    click.echo(f"Conveyor is running at http://{host}:{port}/ with {threads} worker threads")
    click.echo(f"Sign in as {name} with this link (it holds the token):")
    click.echo(link)
    if replaced:
        click.echo(f"({name} was given a new token for it: a token {name} was given before no longer works.)")
    click.echo(f"(`conveyor users link {name}` makes a new link any time.)")
    try:
        run_simple(host, port, app, threaded=True, use_reloader=False, use_debugger=False,
                   request_handler=RedactingRequestHandler)
    finally:
        worker.stop()
