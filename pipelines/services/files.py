"""Users' files: uploads sniffed by their content, stored under server-generated keys, and read back.

An upload is accepted only when its first bytes say it is audio, video or an image; the name
and the Content-Type the client sent are not trusted (a renamed ``.html`` is refused). The
storage key comes from the server, with the extension of the sniffed kind.
"""

from __future__ import annotations

import re
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from sqlalchemy import func, select

from actors.files.keys import new_key
from actors.files.storage import get_storage
from actors.media.sniff import ACCEPTED, SNIFF_BYTES, sniff  # noqa: F401 - ACCEPTED is part of this API
from conveyor.errors import FileTooLarge, QuotaExceeded, StoredFileNotFound, UnsupportedFile
from pipelines.engine.results import file_url
from pipelines.store.db import transaction
from pipelines.store.models import StoredFile, User

#: bytes copied at a time.
CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Download:
    """What a download needs: the name, kind and size, and the local path or an opener."""

    filename: str
    content_type: str
    size: int
    path: Path | None
    key: str

    def open(self) -> BinaryIO:
        return get_storage().open(self.key)


def clean_filename(name: str | None, extension: str) -> str:
    """A display name: the last path part, printable characters only, at most 200 of them."""
    base = PurePosixPath((name or "").replace("\\", "/")).name
    base = "".join(c for c in unicodedata.normalize("NFC", base) if c.isprintable() and c not in '"<>|*?:')
    base = re.sub(r"\s+", " ", base).strip(" .")[:200]
    return base or f"upload.{extension}"


def describe(stored: StoredFile) -> dict[str, Any]:
    """The file object of the REST contract."""
    return {"id": stored.id, "filename": stored.filename, "content_type": stored.content_type,
            "size": stored.size, "url": file_url(stored.id)}


def describe_media(path: Path, content_type: str) -> dict[str, Any] | None:
    """An upload's duration and size, probed once so job submission can check the media caps.

    None when the file cannot be probed: the stage that reads it reports ``invalid_media``.
    """
    from actors.errors import StageError
    from actors.media.caps import image_size
    from actors.media.ffmpeg import probe

    try:
        if content_type.startswith("image/"):
            width, height = image_size(path)
            return {"duration": None, "width": width, "height": height, "image": True}
        info = probe(path)
    except (StageError, OSError, ValueError):
        return None
    return {"duration": info.duration, "width": info.width, "height": info.height}


def media_cap_errors(session: Any, data: Any, user_id: str | None, field: str = "input") -> list[dict[str, str]]:
    """The inputs naming an uploaded file (``file:<id>``) over a media cap, as field errors (``media_too_large``)."""
    from actors.media.caps import over_caps

    if isinstance(data, dict):
        return [e for k, v in data.items() for e in media_cap_errors(session, v, user_id, f"{field}.{k}")]
    if isinstance(data, list):
        return [e for i, v in enumerate(data) for e in media_cap_errors(session, v, user_id, f"{field}.{i}")]
    if not (isinstance(data, str) and data.startswith("file:")) or len(data) > 41:
        return []
    stored = session.get(StoredFile, data[len("file:"):])
    if stored is None or stored.user_id != user_id or not stored.media:
        return []
    media = stored.media
    reason = over_caps(media.get("duration"), media.get("width"), media.get("height"), image=bool(media.get("image")))
    return [{"field": field, "message": reason, "code": "media_too_large"}] if reason else []


def used_bytes(user_id: str | None) -> int:
    """The bytes of the user's stored files (uploads and job outputs)."""
    with transaction() as session:
        return int(session.scalar(select(func.coalesce(func.sum(StoredFile.size), 0))
                                  .where(StoredFile.user_id == user_id)) or 0)


def save_upload(stream: BinaryIO, *, filename: str | None, user_id: str | None, max_bytes: int,
                quota_bytes: int | None = None, declared_bytes: int | None = None) -> dict[str, Any]:
    """Sniff, size-check and store an upload; returns its file object.

    ``quota_bytes``: the most the user's stored files may add up to, this one included (checked
    with ``declared_bytes`` before the body is read, and with the real size before it is stored).

    Raises:
      UnsupportedFile: empty, or not an accepted kind.
      FileTooLarge: more than ``max_bytes`` bytes.
      QuotaExceeded: over ``quota_bytes``.
    """
    used = used_bytes(user_id) if quota_bytes else 0
    if quota_bytes and used + max(0, min(declared_bytes or 0, max_bytes)) > quota_bytes:
        raise QuotaExceeded(quota_bytes, used)
    head = stream.read(SNIFF_BYTES)
    if not head:
        raise UnsupportedFile("the file is empty")
    kind = sniff(head)
    if kind is None:
        raise UnsupportedFile("only audio, video and image files are accepted (the kind is read from the content)")
    content_type, extension = kind
    with tempfile.NamedTemporaryFile(prefix="conveyor-upload-") as tmp:
        size = len(head)
        tmp.write(head)
        while size <= max_bytes:
            chunk = stream.read(CHUNK)
            if not chunk:
                break
            size += len(chunk)
            tmp.write(chunk)
        if size > max_bytes:
            raise FileTooLarge(max_bytes)
        if quota_bytes and used + size > quota_bytes:
            raise QuotaExceeded(quota_bytes, used)
        tmp.flush()
        media = describe_media(Path(tmp.name), content_type)
        key = new_key(f"uploads/{user_id or 'shared'}", f"file.{extension}")
        get_storage().put_file(key, Path(tmp.name), content_type)
    try:
        with transaction() as session:
            if quota_bytes and user_id is not None:
                # Uploads of one user are serialized here (the user's row is locked; SQLite's writers
                # are serialized anyway), so concurrent uploads cannot together pass the quota.
                session.execute(select(User.id).where(User.id == user_id).with_for_update())
                now_used = int(session.scalar(select(func.coalesce(func.sum(StoredFile.size), 0))
                                              .where(StoredFile.user_id == user_id)) or 0)
                if now_used + size > quota_bytes:
                    raise QuotaExceeded(quota_bytes, now_used)
            stored = StoredFile(user_id=user_id, key=key, filename=clean_filename(filename, extension),
                                content_type=content_type, size=size, media=media)
            session.add(stored)
            session.flush()
            return describe(stored)
    except BaseException:
        get_storage().delete(key)
        raise


def _owned(session: Any, file_id: str, user_id: str | None) -> StoredFile:
    stored = session.get(StoredFile, file_id) if len(file_id) <= 36 else None
    if stored is None or (user_id is not None and stored.user_id != user_id):
        raise StoredFileNotFound(file_id)
    return stored


def get_file(file_id: str, *, user_id: str | None) -> dict[str, Any]:
    """A user's file object. Raises StoredFileNotFound, also for another user's file."""
    with transaction() as session:
        return describe(_owned(session, file_id, user_id))


def open_download(file_id: str, *, user_id: str | None) -> Download:
    """Where a user's file's bytes are. Raises StoredFileNotFound (also when its bytes are gone)."""
    with transaction() as session:
        stored = _owned(session, file_id, user_id)
        filename, content_type, key = stored.filename, stored.content_type, stored.key
    storage = get_storage()
    path = storage.local_path(key)
    if path is not None:
        if not path.is_file():
            raise StoredFileNotFound(file_id)
        return Download(filename, content_type, path.stat().st_size, path, key)
    if not storage.exists(key):
        raise StoredFileNotFound(file_id)
    return Download(filename, content_type, storage.size(key), None, key)
