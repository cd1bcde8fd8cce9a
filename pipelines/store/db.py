"""The database engine and sessions. Sessions are opened at the edge and passed in."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import OperationalError as SQLAlchemyOperationalError
from sqlalchemy.orm import Session, sessionmaker

from conveyor.config import settings
from pipelines.store.jobrow import StoreSession

logger = logging.getLogger(__name__)
T = TypeVar("T")

#: s; how long the engine keeps trying a write while the database cannot be reached (a restart, a
#: fail-over) before it gives up, leaving the run to its lease lapsing, which runs the stage again.
UNREACHABLE_PATIENCE = 30.0

_engines: dict[str, tuple[Engine, sessionmaker[Session]]] = {}


def unreachable(error: BaseException) -> bool:
    """Whether ``error`` says the database could not be reached (worth trying again), not that a statement
    failed (psycopg's own errors on the hot path, SQLAlchemy's elsewhere)."""
    if isinstance(error, psycopg.OperationalError):
        return True
    return isinstance(error, DBAPIError) and (isinstance(error, SQLAlchemyOperationalError)
                                              or error.connection_invalidated)


def while_unreachable(call: Callable[[], T], *, what: str, patience: float = UNREACHABLE_PATIENCE) -> T:
    """``call()``, tried again after a growing pause while the database cannot be reached, for at most
    ``patience`` s; any other error, or the last one, is raised.

    A retry after a commit whose acknowledgement was lost is safe: every transition is conditional on
    the run's dispatch token, so it finds the run moved on and records nothing.
    """
    deadline = time.monotonic() + patience
    delay = 0.1
    while True:
        try:
            return call()
        except Exception as error:
            if not unreachable(error) or time.monotonic() + delay > deadline:
                raise
            logger.warning("Could not reach the database to %s (%s); retrying in %.1f s", what,
                           type(getattr(error, "orig", None) or error).__name__, delay)
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run beside the one writer; busy_timeout makes writers queue instead of failing.
    # Transactions are begun by _sqlite_begin below, not by the driver.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    # Take the write lock up front: a transaction that read first and writes later could otherwise
    # fail to upgrade its WAL snapshot. SQLite thus runs writers one at a time (embedded mode only).
    if connection.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    # No pre-ping: a connection broken by a database restart fails its transaction once, SQLAlchemy then
    # discards the pool, and the engine's leases and reconciler re-run what that transaction carried.
    return create_engine(url, pool_size=10, max_overflow=20)


def get_engine() -> Engine:
    return _entry()[0]


def _entry() -> tuple[Engine, sessionmaker[Session]]:
    url = settings().database_url
    if url not in _engines:
        engine = make_engine(url)
        _engines[url] = (engine, sessionmaker(engine, class_=StoreSession, expire_on_commit=False))
    return _engines[url]


@contextmanager
def transaction() -> Iterator[Session]:
    """A session in one transaction: committed on success, rolled back on error."""
    with _entry()[1].begin() as session:
        yield session


@contextmanager
def autocommit() -> Iterator[Connection]:
    """A connection whose every statement commits by itself (for single conditional statements)."""
    with get_engine().connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        yield connection


def dispose_all() -> None:
    """Close every pool (after a fork, or between tests)."""
    for engine, _ in _engines.values():
        engine.dispose()
    _engines.clear()
