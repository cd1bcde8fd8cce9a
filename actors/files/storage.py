"""File storage by key: a local directory or an S3-compatible bucket, chosen by ``STORAGE_URL``.

Stages pass files to each other as references ``storage:<key>``, never as bytes; keys and references
are made and checked in :mod:`actors.files.keys`, which the S3 backend shares without importing this.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import urlparse

from actors.files.keys import check_key, key_of, new_key, ref
from conveyor.config import settings
from conveyor.errors import StorageError

#: A stage output's own file name, kept in its key: letters, digits, dots, dashes and underscores.
_OUTPUT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}\.[A-Za-z0-9]{1,8}$")



class Storage(Protocol):
    """What every storage backend offers."""

    def put_file(self, key: str, path: Path, content_type: str | None = None) -> str: ...

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> str: ...

    def download(self, key: str, dest: Path) -> Path: ...

    def open(self, key: str) -> BinaryIO: ...

    def size(self, key: str) -> int: ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None: ...

    def delete_folder(self, prefix: str) -> int:
        """Delete every file whose key starts with ``prefix + "/"``; returns how many."""
        ...

    def local_path(self, key: str) -> Path | None: ...

    def presigned_url(self, key: str, *, filename: str, expires: int = 3600) -> str | None: ...


class LocalStorage:
    """Files under one directory; the default for embedded mode and single-machine set-ups."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put_file(self, key: str, path: Path, content_type: str | None = None) -> str:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        return key

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> str:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        return key

    def download(self, key: str, dest: Path) -> Path:
        source = self._path(key)
        if not source.is_file():
            raise StorageError(f"no stored file {key!r}")
        shutil.copyfile(source, dest)
        return dest

    def open(self, key: str) -> BinaryIO:
        try:
            return self._path(key).open("rb")
        except FileNotFoundError:
            raise StorageError(f"no stored file {key!r}") from None

    def size(self, key: str) -> int:
        return self._path(key).stat().st_size

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def delete_folder(self, prefix: str) -> int:
        folder = self._path(prefix)
        if not folder.is_dir():
            return 0
        count = sum(1 for path in folder.rglob("*") if path.is_file())
        shutil.rmtree(folder, ignore_errors=True)
        return count

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    def presigned_url(self, key: str, *, filename: str, expires: int = 3600) -> str | None:
        return None


_storage: dict[str, Storage] = {}


def storage_for(url: str) -> Storage:
    """The backend for a ``STORAGE_URL``."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return LocalStorage(Path(parsed.path))
    if parsed.scheme == "s3":
        from actors.files.s3 import S3Storage

        return S3Storage(bucket=parsed.netloc, prefix=parsed.path.strip("/"))
    raise StorageError(f"unsupported STORAGE_URL {url!r}")


def get_storage() -> Storage:
    """The configured storage backend (one per process and URL)."""
    url = settings().storage_url
    if url not in _storage:
        _storage[url] = storage_for(url)
    return _storage[url]


@contextmanager
def local_copy(reference: str, suffix: str = "") -> Iterator[Path]:
    """A local path holding the stored file: the file itself when local, else a temporary download."""
    storage = get_storage()
    key = key_of(reference)
    path = storage.local_path(key)
    if path is not None:
        if not path.is_file():
            raise StorageError(f"no stored file {key!r}")
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="conveyor-") as tmp:
        yield storage.download(key, Path(tmp) / ("input" + (suffix or Path(key).suffix)))


def job_folder(job_id: str) -> str:
    """The key prefix of every file a job's stages store (outputs and intermediate files alike)."""
    return f"jobs/{job_id}"


def store_output(path: Path, *, job_id: str, name: str, content_type: str | None = None) -> str:
    """Store a stage's output file under the job's folder; returns its ``storage:`` reference.

    The key keeps ``name`` when it is a plain file name (``<random>--scene-2.mp4``), so a download can
    be named after it (see :func:`output_name`).
    """
    key = new_key(job_folder(job_id), name)
    if _OUTPUT_NAME.match(name):
        key = check_key(f"{key.rsplit('.', 1)[0] if '.' in key.rsplit('/', 1)[-1] else key}--{name}")
    get_storage().put_file(key, path, content_type)
    return ref(key)


def output_name(key: str) -> str:
    """The file name a stage gave an output (``scene-2.mp4``), else the key's last part."""
    last = key.rsplit("/", 1)[-1]
    _, sep, name = last.partition("--")
    return name if sep and _OUTPUT_NAME.match(name) else last
