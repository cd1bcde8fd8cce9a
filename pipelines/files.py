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

import filetype

from actors.storage import get_storage, new_key
from pipelines.db import transaction
from pipelines.models import StoredFile
from pipelines.results import file_url

#: bytes read to sniff an upload's kind.
SNIFF_BYTES = 8192
#: bytes copied at a time.
CHUNK = 1024 * 1024

#: Sniffed kinds that may be uploaded: MIME type as reported by the sniffer -> (MIME type kept, extension).
ACCEPTED: dict[str, tuple[str, str]] = {
    "audio/mpeg": ("audio/mpeg", "mp3"),
    "audio/mp4": ("audio/mp4", "m4a"),
    "audio/ogg": ("audio/ogg", "ogg"),
    "audio/x-flac": ("audio/flac", "flac"),
    "audio/x-wav": ("audio/wav", "wav"),
    "audio/aac": ("audio/aac", "aac"),
    "audio/x-aiff": ("audio/aiff", "aiff"),
    "audio/amr": ("audio/amr", "amr"),
    "video/mp4": ("video/mp4", "mp4"),
    "video/x-m4v": ("video/mp4", "m4v"),
    "video/quicktime": ("video/quicktime", "mov"),
    "video/x-matroska": ("video/x-matroska", "mkv"),
    "video/webm": ("video/webm", "webm"),
    "video/x-msvideo": ("video/x-msvideo", "avi"),
    "video/mpeg": ("video/mpeg", "mpg"),
    "video/3gpp": ("video/3gpp", "3gp"),
    "video/x-flv": ("video/x-flv", "flv"),
    "image/jpeg": ("image/jpeg", "jpg"),
    "image/png": ("image/png", "png"),
    "image/gif": ("image/gif", "gif"),
    "image/webp": ("image/webp", "webp"),
    "image/bmp": ("image/bmp", "bmp"),
    "image/heic": ("image/heic", "heic"),
    "image/avif": ("image/avif", "avif"),
}


class FileError(Exception):
    """Raised when an upload or a download cannot be served; the root of this module's errors."""


class FileTooLarge(FileError):
    """Raised when an upload is larger than the configured limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the file is larger than the limit of {limit} bytes")
        self.limit = limit


class UnsupportedFile(FileError):
    """Raised when an upload's content is not an accepted audio, video or image kind."""


class StoredFileNotFound(FileError):
    """Raised when no file with that id exists for that user."""


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


def _mpeg_audio_frame(head: bytes) -> bool:
    # MPEG audio frame sync (11 bits set) with a layer field other than 00 (which is AAC's ADTS).
    return len(head) > 3 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and (head[1] >> 1) & 0x03 != 0


def sniff(head: bytes) -> tuple[str, str] | None:
    """The (MIME type, extension) of an accepted kind the bytes start with, or None."""
    kind = filetype.guess(head)
    if kind is not None:
        return ACCEPTED.get(kind.mime)
    if _mpeg_audio_frame(head):
        return ACCEPTED["audio/mpeg"]
    return None


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


def save_upload(stream: BinaryIO, *, filename: str | None, user_id: str | None, max_bytes: int) -> dict[str, Any]:
    """Sniff, size-check and store an upload; returns its file object.

    Raises:
      UnsupportedFile: empty, or not an accepted kind.
      FileTooLarge: more than ``max_bytes`` bytes.
    """
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
        tmp.flush()
        key = new_key(f"uploads/{user_id or 'shared'}", f"file.{extension}")
        get_storage().put_file(key, Path(tmp.name), content_type)
    with transaction() as session:
        stored = StoredFile(user_id=user_id, key=key, filename=clean_filename(filename, extension),
                            content_type=content_type, size=size)
        session.add(stored)
        session.flush()
        return describe(stored)


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
