"""The ``conveyor`` command line: run the service, manage users, and use the API.

Commands that talk to a running service (``submit``, ``status``, ``jobs``, ``retry``,
``cancel``) read ``CONVEYOR_URL`` (default ``http://127.0.0.1:$PORT``) and ``CONVEYOR_TOKEN``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from conveyor.client import APIError
from conveyor.config import settings
from conveyor.errors import ConfigError


def _database_problem(exc: Exception) -> str:
    """One line about a database error, with what to do about it (the URL without its password)."""
    from sqlalchemy.engine import make_url

    try:
        where = make_url(settings().database_url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - only for the message
        where = "the database"
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
    if "no such table" in text or ("relation" in text and "does not exist" in text):
        return f"{where} has no tables yet: run `conveyor db upgrade` first ({text})"
    return f"cannot use {where} ({text}); check DATABASE_URL, then run `conveyor db upgrade`"


class _Main(click.Group):
    """The ``conveyor`` group: a server or database problem ends in one line and exit code 1, no traceback."""

    def invoke(self, ctx: click.Context) -> object:
        import httpx
        from sqlalchemy.exc import SQLAlchemyError

        try:
            return super().invoke(ctx)
        except APIError as exc:
            raise click.ClickException(str(exc)) from None
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise click.ClickException(f"cannot talk to the server ({exc}); check CONVEYOR_URL, e.g. "
                                       f"http://127.0.0.1:5000") from None
        except SQLAlchemyError as exc:
            raise click.ClickException(_database_problem(exc)) from None


@click.group(cls=_Main)
def main() -> None:
    """Conveyor: durable background pipelines for slow AI media work."""
    try:
        settings()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@main.group()
def db() -> None:
    """The job store's schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the database to the newest schema."""
    from pipelines.services.database import upgrade

    upgrade()
    click.echo("database is up to date")


@main.command()
def reconcile() -> None:
    """Re-send stage runs whose message or worker was lost (one pass)."""
    from pipelines.services.clock import reconcile
    from pipelines.worker import setup

    setup()
    click.echo(str(reconcile()))


@main.command()
@click.option("--processes", "-p", type=int, default=lambda: settings().worker_processes)
@click.option("--threads", "-t", type=int, default=lambda: settings().worker_threads)
def worker(processes: int, threads: int) -> None:
    """Run a worker (the Procfile's): ``dramatiq pipelines.worker:setup`` with the configured processes, threads and
    shutdown timeout (WORKER_PROCESSES, WORKER_THREADS)."""
    args = [sys.executable, "-m", "dramatiq", "pipelines.worker:setup", "--processes", str(processes), "--threads",
            str(threads), "--worker-shutdown-timeout", str(settings().worker_shutdown_timeout_ms)]
    os.execv(sys.executable, args)



def _port_default() -> int:
    return settings().port


@main.command()
@click.option("--port", type=int, default=_port_default, help="Default: $PORT or 5000.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--threads", "-t", type=int, default=lambda: settings().worker_threads, help="Worker threads.")
def dev(port: int, host: str, threads: int) -> None:
    """Run everything in one process: the web app and an embedded worker (SQLite and Redis under var/)."""
    from pipelines.services.database import upgrade
    from web.devserver import run_dev

    upgrade()
    run_dev(host, port, threads)


@main.command()
@click.option("--port", type=int, default=_port_default, help="Default: $PORT or 5000.")
def web(port: int) -> None:
    """Run the web app under gunicorn (gevent workers; WEB_CONCURRENCY processes)."""
    config = Path(__file__).with_name("gunicorn.conf.py")
    args = [sys.executable, "-m", "gunicorn", "--config", str(config), "--bind", f"0.0.0.0:{port}",
            "--no-control-socket", "web.app:create_app()"]
    os.execv(sys.executable, args)


@main.group()
def users() -> None:
    """Users and their API tokens."""


def _ready_database() -> None:
    """The job store's tables, created here for SQLite; a clear error for another database without them."""
    from pipelines.services.database import ready_for_use

    try:
        ready_for_use()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@users.command("create")
@click.argument("name")
def users_create(name: str) -> None:
    """Create a user; prints its token alone on the last line (it is shown only once)."""
    from pipelines.services.users import create_user

    _ready_database()
    user = create_user(name)
    click.echo(f"Created user {user.name} ({user.id}). Its token:")
    click.echo(user.token)


@users.command("link")
@click.argument("name")
def users_link(name: str) -> None:
    """A dashboard sign-in link for the user NAME, with a new token (its previous token stops working)."""
    from conveyor.errors import UserNotFound
    from pipelines.services.users import rotate_token
    from pipelines.worker import ensure_setup
    from web.devserver import save_token, sign_in_link

    _ready_database()
    ensure_setup()  # the broker's Redis carries the old token's revocation to every process
    try:
        user = rotate_token(name)
    except UserNotFound as exc:
        raise click.ClickException(f"{exc}; `conveyor users create {name}` makes one") from None
    save_token(user.name, user.token)
    click.echo(f"Open this link to sign in as {user.name} (it holds a new token; the previous one no longer "
               f"works):")
    click.echo(sign_in_link(user.token))


@users.command("token")
@click.argument("name")
def users_token(name: str) -> None:
    """Give a user (by name or id) a new token; the old one and links made with it stop working.

    Prints the new token alone on the last line (it is shown only once).
    """
    from conveyor.errors import UserNotFound
    from pipelines.services.users import rotate_token
    from pipelines.worker import ensure_setup

    ensure_setup()  # the broker's Redis carries the old token's revocation to every process
    try:
        user = rotate_token(name)
    except UserNotFound as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"User {user.name} ({user.id}) has a new token; the old one no longer works. Its token:")
    click.echo(user.token)


@users.command("revoke")
@click.argument("name")
def users_revoke(name: str) -> None:
    """Revoke every token of a user (by name or id), and the grants and file links made with them."""
    from conveyor.errors import UserNotFound
    from pipelines.services.users import revoke_tokens
    from pipelines.worker import ensure_setup

    ensure_setup()  # the broker's Redis carries the revocation to every process
    try:
        user_id = revoke_tokens(name)
    except UserNotFound as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Revoked the tokens of user {name} ({user_id}); `conveyor users token {name}` makes a new one.")


@main.command()
def clock() -> None:
    """Run the clock process: the reconciler every few seconds and the retention clean-up hourly."""
    import signal
    import threading

    from pipelines.services.clock import run_clock
    from pipelines.worker import setup

    setup()  # the broker the reconciler re-sends on

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    click.echo(f"clock: reconciling every {settings().reconcile_interval_seconds:.1f}s")
    run_clock(stop)


@main.command()
@click.option("--threads", "-t", type=int, default=4, show_default=True, help="Worker threads.")
def demo(threads: int) -> None:
    """Turn the bundled sample lecture into notes, in embedded mode, with a progress bar."""
    from web.demo import run_demo

    sys.exit(run_demo(threads=threads))


from web import cli_client  # noqa: E402 - registers submit, status, jobs, retry and cancel

cli_client.register(main)

if __name__ == "__main__":
    main()
