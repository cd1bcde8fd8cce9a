"""The database engine and sessions. Sessions are opened at the edge and passed in."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from conveyor.config import settings
from pipelines.jobrow import StoreSession

_engines: dict[str, tuple[Engine, sessionmaker[Session]]] = {}


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL lets readers run beside the one writer; busy_timeout makes writers queue instead of failing.
    # Transactions are begun by _sqlite_begin below, not by the driver.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(connection) -> None:
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
