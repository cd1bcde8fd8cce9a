"""The Python API the web layer calls: start, get, list, cancel and retry jobs.

Each function is the edge of one transaction: it opens it, and sends the messages the
transition produced only after the commit. Results are plain dicts shaped as the job
object of the REST contract.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import ColumnElement, and_, bindparam, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, undefer

from actors.files.urls import url_errors, webhook_url_errors
from conveyor.errors import FileNotFound, IdempotencyConflict, InvalidJobInput, JobConflict, JobNotFound
from conveyor.statuses import JobStatus
from pipelines.definition import OtherJob, get_pipeline
from pipelines.engine import machine as engine
from pipelines.engine.dispatch import Outbox, send
from pipelines.engine.progress import remaining_eta
from pipelines.engine.results import resolve_file_references
from pipelines.services.files import media_cap_errors
from pipelines.store.db import autocommit, transaction
from pipelines.store.jobrow import JOBS, JobLike, JobRow, lock_job, new_job_row
from pipelines.store.models import STEP_ROW, Job, StageRun, iso

#: The character PostgreSQL cannot store in text or JSON.
NUL = "\x00"
#: Most jobs one list call returns.
MAX_PAGE = 100
#: bytes; the most a job's ``metadata`` may take as compact JSON (UTF-8).
MAX_METADATA_BYTES = 4096
#: Most ``metadata.<key>`` filters one list call takes; what a filter's key may be.
MAX_METADATA_FILTERS = 8
METADATA_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")
_READ_JOB = select(JOBS).where(JOBS.c.id == bindparam("job_id"))
_READ_JOBS = select(JOBS).where(JOBS.c.id.in_(bindparam("job_ids", expanding=True)))


def serialize(job: JobLike) -> dict[str, Any]:
    """The job object of the REST contract: the fields of :class:`conveyor.job_shape.JobOut`, in its order.

    Built as a dict, not validated through the model on each read: a read answers what the row holds
    (``tests/web/test_job_shape.py`` holds the two to the same fields).
    """
    return {
        "id": job.id, "pipeline": job.pipeline, "status": job.status, "progress": round(job.progress or 0.0, 2),
        "step": job.step, "eta_seconds": remaining_eta(job), "stages": job.stages or [],
        "input": job.input, "result": job.result, "errors": job.errors or [], "error": job.error,
        "warnings": job.warnings or [], "metadata": job.meta, "project_id": job.project_id, "attempt": job.attempt, "webhook": job.webhook,
        "created_at": iso(job.created_at), "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at), "updated_at": iso(job.updated_at),
    }


def validate_input(pipeline_name: str, data: Any) -> dict[str, Any]:
    """Check a job request's input against the pipeline's model; returns the normalized input."""
    pipeline = get_pipeline(pipeline_name)
    if pipeline is None:
        raise InvalidJobInput([{"field": "pipeline", "message": f"unknown pipeline {pipeline_name!r}"}])
    if not isinstance(data, dict):
        raise InvalidJobInput([{"field": "input", "message": "must be a JSON object"}])
    try:
        model = pipeline.input_model.model_validate(data)
    except ValidationError as exc:
        raise InvalidJobInput([
            {"field": ".".join(["input", *map(str, e["loc"])]), "message": e["msg"]} for e in exc.errors()
        ]) from None
    return model.model_dump(mode="json", exclude_none=True)


def unavailable_errors(pipeline_name: str) -> list[dict[str, str]]:
    """The error refusing ``pipeline_name`` when it cannot run here (else none): it names what is missing."""
    pipeline = get_pipeline(pipeline_name)
    reason = pipeline.unavailable() if pipeline is not None else None
    return [{"field": "pipeline", "message": f"{pipeline_name} cannot run here: {reason}"}] if reason else []


def metadata_errors(metadata: Any) -> list[dict[str, str]]:
    """The error refusing a job's ``metadata`` when its compact JSON exceeds :data:`MAX_METADATA_BYTES`."""
    if metadata is None:
        return []
    size = len(json.dumps(metadata, separators=(",", ":"), ensure_ascii=False).encode())
    if size <= MAX_METADATA_BYTES:
        return []
    return [{"field": "metadata", "message": f"must be at most {MAX_METADATA_BYTES} bytes as compact JSON; "
                                             f"this is {size}"}]


def check_request(pipeline: str, input: Any, webhook_url: str | None = None, metadata: Any = None
                  ) -> dict[str, Any]:
    """Vet a job request whole, so one answer names every bad field; returns the normalized input.

    Raises:
      InvalidJobInput: an unknown pipeline, one this install cannot run (its local providers are not
        installed and their keys not set), bad input, metadata over its size, or a URL that may not be
        fetched or posted to.
    """
    nul = nul_fields({"pipeline": pipeline, "input": input, "webhook_url": webhook_url, "metadata": metadata})
    if nul:
        raise InvalidJobInput([{"field": name, "message": "must not contain the NUL character (U+0000)"}
                               for name in nul])
    errors = unavailable_errors(pipeline) + webhook_url_errors(webhook_url) + metadata_errors(metadata)
    data: dict[str, Any] = {}
    try:
        data = validate_input(pipeline, input)
        errors = url_errors(data) + errors  # vetting may resolve names: done before any transaction
    except InvalidJobInput as exc:
        errors = exc.errors + errors
    if errors:
        raise InvalidJobInput(errors)
    return data


def nul_fields(value: Any, field: str = "") -> list[str]:
    """The dotted names of the strings (dict keys included) under ``value`` holding U+0000.

    PostgreSQL's text and JSON columns cannot store that character; SQLite can, so it is refused
    before either sees it.
    """
    if isinstance(value, str):
        return [field or "value"] if NUL in value else []
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            name = f"{field}.{key}" if field else str(key)
            if NUL in str(key):
                found.append(name.replace(NUL, "\\u0000"))
            found += nul_fields(item, name)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found += nul_fields(item, f"{field}.{index}" if field else str(index))
    return list(dict.fromkeys(f.replace(NUL, "\\u0000") for f in found))


def _request_hash(**request: Any) -> str:
    return hashlib.sha256(json.dumps(request, sort_keys=True, default=str).encode()).hexdigest()


def start_job(
    *, pipeline: str, input: dict[str, Any], user_id: str | None = None, project_id: str | None = None,
    webhook_url: str | None = None, idempotency_key: str | None = None, admit: Callable[[], None] | None = None,
    metadata: Any = None,
) -> dict[str, Any]:
    """Accept a job: validate, write the job and its first run, then send the first message.

    ``metadata`` (any JSON, at most :data:`MAX_METADATA_BYTES`) is kept with the job and returned unchanged.

    ``admit`` (e.g. a rate limit) is called once this request is known to create the job: after
    its row is written, so that a repeat of an Idempotency-Key, concurrent or not, waits for the
    first request and gets its job without being admitted (counted) again. Whatever it raises
    undoes the job.

    Raises:
      InvalidJobInput: unknown pipeline, bad input or a URL that may not be fetched (field errors).
      IdempotencyConflict: the key was used before with another body.
    """
    nul = nul_fields({"project_id": project_id, "Idempotency-Key": idempotency_key})
    if nul:
        raise InvalidJobInput([{"field": name, "message": "must not contain the NUL character (U+0000)"}
                               for name in nul])
    data = check_request(pipeline, input, webhook_url, metadata)
    definition = get_pipeline(pipeline)
    assert definition is not None
    # Metadata joins the hash only when given, so keys of requests made before it existed still replay.
    extra = {} if metadata is None else {"metadata": metadata}
    digest = _request_hash(pipeline=pipeline, input=input, project_id=project_id, webhook_url=webhook_url, **extra)
    try:
        with transaction() as session:
            if idempotency_key:
                existing = _by_idempotency_key(session, user_id, idempotency_key)
                if existing is not None:
                    return _replay(existing, digest)
            too_large = media_cap_errors(session, data, user_id)
            if too_large:  # refused before any stage runs, let alone a fan-out
                raise InvalidJobInput(too_large)
            try:
                resolved = resolve_file_references(session, data, user_id)
                if definition.prepare_input is not None:
                    resolved = definition.prepare_input(functools.partial(other_job, session), resolved, user_id)
            except FileNotFound as exc:
                raise InvalidJobInput([{"field": f"input.{exc.field}", "message": "no such file"}]) from None
            job = new_job_row(session, {
                # resolved_input is kept only when it differs from the input (file references resolved):
                # the same JSON is not stored twice.
                "pipeline": pipeline, "user_id": user_id, "input": data,
                "resolved_input": None if resolved == data else resolved,
                "project_id": project_id, "webhook_url": webhook_url, "idempotency_key": idempotency_key,
                "meta": metadata,
                "request_hash": digest, "errors": [], "stages": engine.initial_summary(definition), "step": "Queued",
            })
            if admit is not None:
                job.save()  # the unique (user, key) row: a concurrent repeat waits here, then replays
                admit()
            outbox = engine.start_step(session, job, definition, 0, resolved)
            engine.record_event(session, outbox, job, "status", status=job.status)
            body = serialize(job)
    except IntegrityError:
        # Another request with the same Idempotency-Key won the race: answer with its job.
        with transaction() as session:
            existing = _by_idempotency_key(session, user_id, idempotency_key or "")
            if existing is None:
                raise
            return _replay(existing, digest)
    send(outbox)
    return body


def other_job(session: Session, job_id: str) -> OtherJob | None:
    """Another job as a pipeline's ``prepare_input`` may see it, with its last step's output."""
    job = session.get(Job, job_id)
    if job is None:
        return None
    output = session.scalars(select(StageRun.output).where(StageRun.job_id == job.id, StageRun.item == STEP_ROW)
                             .order_by(StageRun.step.desc()).limit(1)).one_or_none()
    return OtherJob(pipeline=job.pipeline, user_id=job.user_id, status=job.status, output=output)


def idempotency_key_used(user_id: str | None, key: str) -> bool:
    """Whether the user's ``key`` already names a job (a request with it is a repeat, not a new job)."""
    with transaction() as session:
        return _by_idempotency_key(session, user_id, key) is not None


def _by_idempotency_key(session: Session, user_id: str | None, key: str) -> Job | None:
    return session.scalars(select(Job).where(Job.user_id == user_id, Job.idempotency_key == key)).one_or_none()


def _replay(job: Job, digest: str) -> dict[str, Any]:
    if job.request_hash != digest:
        raise IdempotencyConflict("this Idempotency-Key was used with a different request")
    return serialize(job)


def _owned_locked(session: Session, job_id: str, user_id: str | None) -> JobRow:
    job = lock_job(session, job_id)
    if job is None or (user_id is not None and job.user_id != user_id):
        raise JobNotFound(job_id)
    return job


def get_job(job_id: str, *, user_id: str | None = None) -> dict[str, Any]:
    """One job by id: one indexed read, in autocommit (no transaction to begin and end).

    Raises JobNotFound, also for another user's job.
    """
    with autocommit() as connection:
        job = connection.execute(_READ_JOB, {"job_id": job_id}).first()
    if job is None or (user_id is not None and job.user_id != user_id):
        raise JobNotFound(job_id)
    return serialize(job)


def get_jobs(keys: list[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Several jobs by ``(job id, user id)``, in one indexed read.

    A key whose job does not exist, or is another user's, is left out of the answer.
    """
    ids = list({job_id for job_id, _ in keys})
    with autocommit() as connection:
        rows = {row.id: row for row in connection.execute(_READ_JOBS, {"job_ids": ids})}
    found = {}
    for job_id, user_id in keys:
        row = rows.get(job_id)
        if row is not None and row.user_id == user_id:
            found[(job_id, user_id)] = serialize(row)
    return found


def _encode_cursor(job: Job) -> str:
    return base64.urlsafe_b64encode(f"{job.created_at.isoformat()}|{job.id}".encode()).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        created, job_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        if "\x00" in job_id or len(job_id) > 36:
            raise ValueError(job_id)
        return datetime.fromisoformat(created), job_id
    except (ValueError, UnicodeDecodeError):
        raise InvalidJobInput([{"field": "cursor", "message": "not a cursor from a previous page"}]) from None


def _metadata_filter_errors(metadata: dict[str, str]) -> list[dict[str, str]]:
    if len(metadata) > MAX_METADATA_FILTERS:
        return [{"field": "metadata", "message": f"at most {MAX_METADATA_FILTERS} metadata filters"}]
    return [{"field": f"metadata.{key}", "message": "a metadata filter's key is 1 to 64 letters, digits, _ or -"}
            for key in metadata if not METADATA_KEY.fullmatch(key)]


def _metadata_is(dialect: str, key: str, value: str) -> ColumnElement[bool]:
    """The job's metadata holds the string ``value`` at its top-level ``key`` (not a number that reads
    the same: PostgreSQL's ``->>`` would let one match)."""
    kind = (func.json_typeof(Job.meta[key]) == "string" if dialect == "postgresql"
            else func.json_type(Job.meta, f'$."{key}"') == "text")
    return and_(Job.meta[key].as_string() == value, kind)


def list_jobs(
    *, user_id: str | None, pipeline: str | None = None, status: str | None = None,
    project_id: str | None = None, limit: int = 20, cursor: str | None = None,
    metadata: dict[str, str] | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of jobs, newest first, and the cursor of the next page (or None).

    ``metadata``: only jobs whose metadata holds each of these string values at its top-level key.
    """
    metadata = metadata or {}
    bad = nul_fields({"pipeline": pipeline, "status": status, "project_id": project_id, "cursor": cursor,
                      "metadata": metadata})
    if bad:
        raise InvalidJobInput([{"field": name, "message": "must not contain the NUL character (U+0000)"}
                               for name in bad])
    if status is not None and status not in {s.value for s in JobStatus}:
        raise InvalidJobInput([{"field": "status", "message": f"unknown status {status!r}"}])
    wrong = _metadata_filter_errors(metadata)
    if wrong:
        raise InvalidJobInput(wrong)
    limit = max(1, min(MAX_PAGE, limit))
    query = select(Job).options(undefer("*"))
    if user_id is not None:
        query = query.where(Job.user_id == user_id)
    if pipeline:
        query = query.where(Job.pipeline == pipeline)
    if status:
        query = query.where(Job.status == status)
    if project_id:
        query = query.where(Job.project_id == project_id)
    if cursor:
        created, last_id = _decode_cursor(cursor)
        query = query.where(or_(Job.created_at < created, and_(Job.created_at == created, Job.id < last_id)))
    with transaction() as session:
        dialect = session.get_bind().dialect.name
        for key, value in metadata.items():
            query = query.where(_metadata_is(dialect, key, value))
        jobs = list(session.scalars(query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1)))
        more = len(jobs) > limit
        jobs = jobs[:limit]
        return [serialize(j) for j in jobs], (_encode_cursor(jobs[-1]) if more and jobs else None)


def cancel_job(job_id: str, *, user_id: str | None = None) -> dict[str, Any]:
    """Cancel a pending or processing job. Raises JobNotFound, JobConflict if already finished."""
    return _change(job_id, user_id, engine.cancel, from_statuses=(JobStatus.PENDING, JobStatus.PROCESSING),
                   refusal="job is already {status}")


def retry_job(job_id: str, *, user_id: str | None = None) -> dict[str, Any]:
    """Resume a failed or canceled job at the step that did not finish, reusing finished outputs.

    Raises JobNotFound, JobConflict unless the job failed or was canceled. Of two concurrent
    retries one resumes the job and the other gets JobConflict.
    """
    return _change(job_id, user_id, engine.resume, from_statuses=(JobStatus.FAILED, JobStatus.CANCELED),
                   refusal="only a failed or canceled job can be retried; this one is {status}")


def _change(job_id: str, user_id: str | None, transition: Callable[[Session, JobRow], Outbox], *,
            from_statuses: tuple[JobStatus, ...], refusal: str) -> dict[str, Any]:
    """Apply ``transition`` to the user's job under its row lock, if its status allows; send after commit."""
    with transaction() as session:
        job = _owned_locked(session, job_id, user_id)
        if job.status not in from_statuses:
            raise JobConflict(refusal.format(status=job.status))
        outbox = transition(session, job)
        body = serialize(job)
    send(outbox)
    return body
