"""Stored files of users: uploads referenced as ``file:<id>`` and job outputs turned into URLs."""

from __future__ import annotations

import mimetypes
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from actors.files.keys import REF_PREFIX, key_of
from actors.files.storage import get_storage, output_name
from conveyor.errors import FileNotFound
from pipelines.store.jobrow import JobRow
from pipelines.store.models import StoredFile

FILE_PREFIX = "file:"


def file_url(file_id: str) -> str:
    return f"/api/files/{file_id}"


def _walk(value: Any, replace: Callable[[str], Any]) -> Any:
    if isinstance(value, dict):
        return {k: _walk(v, replace) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v, replace) for v in value]
    if isinstance(value, str):
        return replace(value)
    return value


def finalize_result(session: Session, job: JobRow, output: Any) -> dict[str, Any]:
    """The job's result: every ``storage:<key>`` becomes a download URL of a file the job's user owns."""
    known: dict[str, str] = {}

    def to_url(text: str) -> str:
        if not text.startswith(REF_PREFIX):
            return text
        key = key_of(text)
        if key not in known:
            existing = session.scalars(select(StoredFile).where(StoredFile.key == key)).one_or_none()
            if existing is not None and existing.user_id == job.user_id:
                known[key] = existing.id
            else:
                stored = StoredFile(
                    user_id=job.user_id, job_id=job.id, key=key, filename=output_name(key),
                    content_type=mimetypes.guess_type(key)[0] or "application/octet-stream", size=_size(key),
                )
                session.add(stored)
                session.flush()
                known[key] = stored.id
        return file_url(known[key])

    result = _walk(output, to_url)
    return result if isinstance(result, dict) else {"output": result}


def _size(key: str) -> int:
    try:
        return get_storage().size(key)
    except Exception:  # a missing size must not fail a finished job
        return 0


def resolve_file_references(session: Session, data: Any, user_id: str | None, field: str = "") -> Any:
    """Turn every ``file:<id>`` in a job input into ``storage:<key>``, checking the user owns it."""
    if isinstance(data, dict):
        return {k: resolve_file_references(session, v, user_id, f"{field}.{k}" if field else k) for k, v in data.items()}
    if isinstance(data, list):
        return [resolve_file_references(session, v, user_id, f"{field}.{i}") for i, v in enumerate(data)]
    if isinstance(data, str) and data.startswith(REF_PREFIX):
        raise FileNotFound(field, data)  # internal references are never accepted from users
    if isinstance(data, str) and data.startswith(FILE_PREFIX):
        file_id = data[len(FILE_PREFIX) :]
        stored = session.get(StoredFile, file_id) if len(file_id) <= 36 else None
        if stored is None or (user_id is not None and stored.user_id != user_id):
            raise FileNotFound(field, file_id)
        return REF_PREFIX + stored.key
    return data
