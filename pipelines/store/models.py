"""The job store's tables (SQLAlchemy 2.0 typed ORM). The SQL database is the source of truth."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from conveyor.statuses import JobStatus


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def iso(value: datetime | None) -> str | None:
    """A stored (naive UTC) time as the contract writes it: ``2026-11-22T10:00:00Z``."""
    return value.isoformat(timespec="seconds") + "Z" if value is not None else None


def new_id() -> str:
    return str(uuid.uuid4())


class RunStatus(StrEnum):
    """A stage run's status. ``waiting`` = created, its message not sent yet (fan-out beyond the cap)."""

    WAITING = "waiting"
    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"


TERMINAL_RUN = (RunStatus.COMPLETED.value, RunStatus.FAILED.value, RunStatus.CANCELED.value)

#: The row of a step itself; item rows of a fan-out or parallel step count from 0.
STEP_ROW = -1

uuid_pk = Annotated[str, mapped_column(String(36), primary_key=True, default=new_id)]
timestamp = Annotated[datetime, mapped_column(default=utcnow)]
json_column = Annotated[Any, mapped_column(JSON, nullable=True)]

# Named constraints, so Alembic's batch mode can alter them on SQLite.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class User(Base):
    __tablename__ = "users"

    id: Mapped[uuid_pk]
    name: Mapped[str] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  #: sha256 of the bearer token
    #: +1 each time the token is replaced or revoked; grants made under an older one stop working
    token_generation: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))
    created_at: Mapped[timestamp]

    def __repr__(self) -> str:
        return f"<User {self.name} {self.id}>"


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("user_id", "idempotency_key", name="uq_jobs_user_idempotency"),
        Index("ix_jobs_user_created", "user_id", "created_at"),
        Index("ix_jobs_status", "status"),
    )

    id: Mapped[uuid_pk]
    user_id: Mapped[str | None] = mapped_column(String(36))
    pipeline: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20), default=JobStatus.PENDING.value)
    attempt: Mapped[int] = mapped_column(Integer, default=1)  #: 1, then +1 for each retry of the job
    progress: Mapped[float] = mapped_column(default=0.0)  #: 0–100, never lowered within one attempt
    step: Mapped[str | None] = mapped_column(String(300))
    eta_seconds: Mapped[float | None]
    eta_at: Mapped[datetime | None]  #: when eta_seconds was computed
    stages: Mapped[json_column]  #: per-step summary, kept current so a read costs one query
    # Deferred: transitions lock and rewrite the job row many times and never need these.
    input: Mapped[Any] = mapped_column(JSON, nullable=True, deferred=True)
    #: the first stage's input when it differs from ``input`` (file references resolved); else NULL
    resolved_input: Mapped[Any] = mapped_column(JSON, nullable=True, deferred=True)
    result: Mapped[Any] = mapped_column(JSON, nullable=True, deferred=True)
    errors: Mapped[json_column]  #: item failures tolerated by the pipeline
    #: ``{"code", "message", "stage"}`` of each thing a stage could not do as asked and made do without
    warnings: Mapped[Any] = mapped_column(JSON, default=list, server_default=text("'[]'"))
    error: Mapped[json_column]  #: {"stage", "code", "message"} of a failed job
    project_id: Mapped[str | None] = mapped_column(String(100))
    #: the request's ``metadata`` (any JSON, returned unchanged); ``metadata`` is taken by SQLAlchemy
    meta: Mapped[Any] = mapped_column(JSON, nullable=True, deferred=True)
    webhook_url: Mapped[str | None] = mapped_column(Text)
    #: the finished job's webhook delivery: {"id", "status", "attempts", "response", "error", "updated_at"}
    webhook: Mapped[json_column]
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    notified_at: Mapped[datetime | None]  #: when the user saw the finished job in notifications
    created_at: Mapped[timestamp]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    updated_at: Mapped[timestamp]

    def __repr__(self) -> str:
        return f"<Job {self.pipeline} {self.id} {self.status}>"


class StageRun(Base):
    """One step of a job (``item == -1``) or one item/branch of a fan-out or parallel step."""

    __tablename__ = "stage_runs"
    __table_args__ = (
        UniqueConstraint("job_id", "step", "item", name="uq_stage_runs_job_step_item"),
        Index("ix_stage_runs_status_lease", "status", "lease_until"),
        Index("ix_stage_runs_status_due", "status", "due_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    step: Mapped[int]
    item: Mapped[int] = mapped_column(default=STEP_ROW)
    name: Mapped[str] = mapped_column(String(100))
    actor: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default=RunStatus.WAITING.value)
    progress: Mapped[float] = mapped_column(default=0.0)  #: 0–1
    message: Mapped[str | None] = mapped_column(String(300))
    attempts: Mapped[int] = mapped_column(default=0)  #: attempts that ran (poll-later runs not counted)
    waited: Mapped[float] = mapped_column(default=0.0)  #: s spent in poll-later and rate-limit pauses
    input: Mapped[json_column]
    output: Mapped[json_column]
    checkpoint: Mapped[json_column]
    error: Mapped[json_column]
    dispatch_token: Mapped[str | None] = mapped_column(String(36))  #: only the message with it may run
    message_id: Mapped[str | None] = mapped_column(String(64))  #: the broker's id of that message
    queue: Mapped[str | None] = mapped_column(String(100))
    due_at: Mapped[datetime | None]  #: when the queued message should start
    lease_until: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    duration: Mapped[float | None]  #: s from first start to finish, for ETAs of later runs
    updated_at: Mapped[timestamp]

    def __repr__(self) -> str:
        return f"<StageRun {self.job_id}:{self.step}.{self.item} {self.name} {self.status}>"


class JobEvent(Base):
    """An audit row: a stage or status transition of a job, in order.

    Not to be confused with a live *notice* (:mod:`pipelines.engine.notices`, not stored) or the SSE
    stream a client reads (:mod:`web.stream`).
    """

    __tablename__ = "job_events"
    __table_args__ = (Index("ix_job_events_job", "job_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(20))  #: "stage" or "status"
    data: Mapped[json_column]
    created_at: Mapped[timestamp]


class StoredFile(Base):
    """An uploaded file or a job's output, owned by a user."""

    __tablename__ = "files"
    __table_args__ = (Index("ix_files_user", "user_id"),)

    id: Mapped[uuid_pk]
    user_id: Mapped[str | None] = mapped_column(String(36))
    job_id: Mapped[str | None] = mapped_column(String(36))
    key: Mapped[str] = mapped_column(String(300), unique=True)
    filename: Mapped[str] = mapped_column(String(300))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    #: an upload's probe: ``{"duration", "width", "height"}`` (None when unknown), for the media caps
    media: Mapped[json_column]
    created_at: Mapped[timestamp]
