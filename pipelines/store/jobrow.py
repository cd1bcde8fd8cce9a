"""A job row for the engine's transitions, read and written with table-level statements.

Every transition locks its job row, changes a few fields and writes them back. Done with the ORM
that costs an identity map entry and a unit-of-work flush each time, the largest share of a
stage's overhead. A :class:`JobRow` reads the row in one ``SELECT … FOR UPDATE`` and writes
what was assigned in one ``UPDATE`` just before the session commits. The web layer's reads keep
using the ORM ``Job``; both have the same attribute names, so :func:`pipelines.services.jobs.serialize`
takes either.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar, overload

from sqlalchemy import Row, Table, bindparam, event, select
from sqlalchemy.orm import Session

from conveyor.job_shape import StageOut
from pipelines.store.models import Job

JOBS: Table = Job.__table__  # type: ignore[assignment]
#: Columns a transition rarely needs (large JSON); read on first access.
_DEFERRED = ("input", "resolved_input", "result", "meta")
_EAGER = [c for c in JOBS.c if c.name not in _DEFERRED]
_LOCK = select(*_EAGER).where(JOBS.c.id == bindparam("job_id")).with_for_update()
_READ_DEFERRED = select(*(JOBS.c[name] for name in _DEFERRED)).where(JOBS.c.id == bindparam("job_id"))
_INSERT = JOBS.insert()
_UPDATE = JOBS.update().where(JOBS.c.id == bindparam("_row_id"))
_SESSION_KEY = "conveyor_job_rows"
_LOCKED_KEY = "conveyor_locked_jobs"


T = TypeVar("T")


class Field(Generic[T]):
    """A typed column of :class:`JobRow`: read from the row (a deferred one on first use); an assignment
    is written before the transaction commits."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, row: None, owner: type) -> Field[T]: ...

    @overload
    def __get__(self, row: JobRow, owner: type) -> T: ...

    def __get__(self, row: JobRow | None, owner: type) -> Field[T] | T:
        if row is None:
            return self
        return row._read(self.name)

    def __set__(self, row: JobRow, value: T) -> None:
        row._values[self.name] = value
        row._changed[self.name] = value


class JobRow:
    """One locked job row: read and assign fields as on ``Job``; assignments are saved before commit.

    Every column of ``jobs`` is a typed :class:`Field` here (``tests/pipelines/test_jobrow.py`` holds them to the
    table), so a misspelt field is an error, not a new attribute.
    """

    __slots__ = ("_session", "_values", "_changed", "_new")

    id = Field[str]()
    user_id = Field[str | None]()
    pipeline = Field[str]()
    status = Field[str]()  #: a :class:`conveyor.statuses.JobStatus` value
    attempt = Field[int]()
    progress = Field[float]()
    step = Field[str | None]()
    eta_seconds = Field[float | None]()
    eta_at = Field[datetime | None]()
    stages = Field[list[StageOut]]()  #: JSON; the typing costs nothing at run time
    input = Field[Any]()
    resolved_input = Field[Any]()
    result = Field[Any]()
    errors = Field[list[dict[str, Any]] | None]()
    error = Field[dict[str, Any] | None]()
    project_id = Field[str | None]()
    webhook_url = Field[str | None]()
    webhook = Field[dict[str, Any] | None]()
    warnings = Field[list[dict[str, Any]]]()
    meta = Field[Any]()  #: the request's ``metadata`` (deferred)
    idempotency_key = Field[str | None]()
    request_hash = Field[str | None]()
    notified_at = Field[datetime | None]()
    created_at = Field[datetime]()
    started_at = Field[datetime | None]()
    finished_at = Field[datetime | None]()
    updated_at = Field[datetime]()

    def __init__(self, session: Session, values: dict[str, Any], *, new: bool = False) -> None:
        self._session = session
        self._values = values
        self._changed: dict[str, Any] = dict(values) if new else {}
        self._new = new
        session.info.setdefault(_SESSION_KEY, []).append(self)

    def _read(self, name: str) -> Any:
        values = self._values
        if name not in values:
            # One read for all of them: whoever needs one (serialize, a hook) usually needs the others.
            row = self._session.connection().execute(_READ_DEFERRED, {"job_id": values["id"]}).one()
            values.update({key: value for key, value in row._mapping.items() if key not in values})
        return values[name]

    def ensure_inserted(self) -> None:
        """Insert a new row now (rows that refer to it are about to be written)."""
        if self._new:
            self.save()

    def save(self) -> None:
        """Write the assigned fields (or insert the row, if new) now; a no-op when nothing changed."""
        if not self._changed:
            return
        connection = self._session.connection()
        if self._new:
            connection.execute(_INSERT, self._changed)
            self._new = False
        else:
            connection.execute(_UPDATE, {"_row_id": self._values["id"], **self._changed})
        self._changed = {}

    def __repr__(self) -> str:
        return f"<JobRow {self._values.get('pipeline')} {self._values.get('id')} {self._values.get('status')}>"


#: What :func:`pipelines.services.jobs.serialize` reads: an ORM job, a locked row, or a row read by a plain select.
JobLike = Job | JobRow | Row[Any]


def lock_job(session: Session, job_id: str) -> JobRow | None:
    """Read the job row and lock it until the transaction ends (a no-op lock on SQLite).

    Within one transaction, the same row is locked once: later calls get the same :class:`JobRow`,
    with the changes made so far (several items' ends recorded together, see ``groupcommit``).
    """
    locked = session.info.setdefault(_LOCKED_KEY, {})
    if job_id in locked:
        return locked[job_id]
    row = session.connection().execute(_LOCK, {"job_id": job_id}).first()
    if row is None:
        return None
    job = locked[job_id] = JobRow(session, dict(row._mapping))
    return job


def write_and_forget(session: Session, job_id: str) -> None:
    """Write what was assigned to ``job_id``'s locked row now, and forget the row: statements that
    follow in this transaction see it as written (the store applying a plan), and a later
    :func:`lock_job` reads it again with what they wrote."""
    row = session.info.get(_LOCKED_KEY, {}).pop(job_id, None)
    if row is not None:
        row.save()


def new_job_row(session: Session, values: dict[str, Any]) -> JobRow:
    """A job to insert: written at the first :meth:`JobRow.save`, at the latest before commit."""
    defaults: dict[str, Any] = {}
    for column in JOBS.c:
        default = column.default
        defaults[column.name] = None if default is None else (
            default.arg(None) if default.is_callable else default.arg)  # type: ignore[attr-defined]
    return JobRow(session, {**defaults, **values}, new=True)


class StoreSession(Session):
    """The job store's session: it writes its job rows' assignments before each commit and forgets
    them on a rollback (the hooks below are on this class only, not on every SQLAlchemy session)."""


@event.listens_for(StoreSession, "before_commit")
def _save_job_rows(session: Session) -> None:
    session.info.pop(_LOCKED_KEY, None)
    for row in session.info.pop(_SESSION_KEY, ()):
        row.save()


@event.listens_for(StoreSession, "after_soft_rollback")
def _forget_job_rows(session: Session, previous_transaction: object) -> None:
    session.info.pop(_LOCKED_KEY, None)
    session.info.pop(_SESSION_KEY, None)
