"""Storage in an S3-compatible bucket (AWS S3, MinIO, R2, ...), for web and worker machines that share no disk.

Chosen by ``STORAGE_URL=s3://bucket/prefix``; every key is stored under ``prefix``. The endpoint,
region and keys come from the settings (``S3_ENDPOINT_URL``, ``AWS_DEFAULT_REGION``,
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``); unset keys fall back to boto3's own chain
(instance profile, web identity, ...). Downloads by clients go straight to the bucket through
presigned URLs.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any, BinaryIO, cast
from urllib.parse import quote

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

from actors.files.keys import check_key
from conveyor.config import settings
from conveyor.errors import StorageError

#: s; connecting to the bucket endpoint.
CONNECT_TIMEOUT = 10
#: s; waiting for a response, per read.
READ_TIMEOUT = 60
#: bytes; above this, uploads and downloads go in parallel parts.
MULTIPART_THRESHOLD = 16 * 1024 * 1024
_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}
_UNSAFE_FILENAME = re.compile(r'[\x00-\x1f\x7f"\\]')


def content_disposition(filename: str) -> str:
    """An ``attachment`` Content-Disposition with an ASCII fallback and the UTF-8 name (RFC 6266)."""
    name = _UNSAFE_FILENAME.sub("_", Path(filename.replace("\\", "/")).name) or "download"
    fallback = name.encode("ascii", "replace").decode("ascii").replace("?", "_")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def _missing(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code")) in _NOT_FOUND


class S3Storage:
    """Files as objects under ``prefix`` in ``bucket``; implements :class:`actors.files.storage.Storage`."""

    def __init__(self, bucket: str, prefix: str = "") -> None:
        if not bucket:
            raise StorageError("STORAGE_URL=s3://... needs a bucket name, e.g. s3://my-bucket/conveyor")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._client: Any = None
        self._lock = threading.Lock()
        self._transfer = TransferConfig(multipart_threshold=MULTIPART_THRESHOLD)

    @property
    def client(self) -> Any:
        """The boto3 client, built on first use from the settings (boto3 clients are thread-safe)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._make_client()
        return self._client

    def _make_client(self) -> Any:
        config = settings()
        endpoint = config.s3_endpoint_url
        return boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint,
            region_name=config.aws_region,
            aws_access_key_id=config.aws_access_key_id,
            aws_secret_access_key=config.secret("aws_secret_access_key"),
            config=Config(
                signature_version="s3v4",
                # Most S3-compatible servers (MinIO, local emulators) only route path-style requests.
                s3={"addressing_style": "path" if endpoint else "auto"},
                retries={"max_attempts": 5, "mode": "standard"},
                connect_timeout=CONNECT_TIMEOUT,
                read_timeout=READ_TIMEOUT,
            ),
        )

    def object_key(self, key: str) -> str:
        """The object's name in the bucket for a storage key."""
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def put_file(self, key: str, path: Path, content_type: str | None = None) -> str:
        extra = {"ContentType": content_type} if content_type else None
        self.client.upload_file(
            str(path), self.bucket, self.object_key(key), ExtraArgs=extra, Config=self._transfer
        )
        return key

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> str:
        extra = {"ContentType": content_type} if content_type else {}
        self.client.put_object(Bucket=self.bucket, Key=self.object_key(key), Body=data, **extra)
        return key

    def download(self, key: str, dest: Path) -> Path:
        try:
            self.client.download_file(self.bucket, self.object_key(key), str(dest), Config=self._transfer)
        except ClientError as exc:
            if _missing(exc):
                raise StorageError(f"no stored file {key!r}") from None
            raise
        return dest

    def open(self, key: str) -> BinaryIO:
        """A streaming body: ``read(n)``, ``iter_chunks()``, ``close()``; nothing is buffered whole."""
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.object_key(key))
        except ClientError as exc:
            if _missing(exc):
                raise StorageError(f"no stored file {key!r}") from None
            raise
        return cast(BinaryIO, response["Body"])

    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            return cast(dict[str, Any], self.client.head_object(Bucket=self.bucket, Key=self.object_key(key)))
        except ClientError as exc:
            if _missing(exc):
                return None
            raise

    def size(self, key: str) -> int:
        head = self._head(key)
        if head is None:
            raise StorageError(f"no stored file {key!r}")
        return int(head["ContentLength"])

    def exists(self, key: str) -> bool:
        return self._head(key) is not None

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.object_key(key))

    def delete_folder(self, prefix: str) -> int:
        count = 0
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.object_key(prefix) + "/")
        for page in pages:  # at most 1,000 keys a page, as many as one delete_objects call takes
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True})
                count += len(keys)
        return count

    def local_path(self, key: str) -> Path | None:
        return None

    def presigned_url(self, key: str, *, filename: str, expires: int = 3600) -> str | None:
        """A GET URL valid ``expires`` seconds that downloads the object as an attachment named ``filename``."""
        return cast(
            str,
            self.client.generate_presigned_url(
                "get_object",
                Params={
                    "Bucket": self.bucket,
                    "Key": self.object_key(key),
                    "ResponseContentDisposition": content_disposition(filename),
                },
                ExpiresIn=expires,
            ),
        )
