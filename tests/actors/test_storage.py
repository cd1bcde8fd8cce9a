"""Storage backends: the same contract on a local directory and on S3 (moto's server on loopback)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer

import actors.files.storage as storage_module
from actors.files.s3 import S3Storage, content_disposition
from actors.files.storage import LocalStorage, get_storage, local_copy, store_output
from conveyor import config
from conveyor.errors import StorageError


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    """An S3 API on 127.0.0.1 at a free port (moto's server mode: real HTTP, no mocks in-process)."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_settings(moto_endpoint, tmp_path) -> Iterator[config.Settings]:
    """Settings with ``STORAGE_URL=s3://<fresh bucket>/media`` pointing at the loopback S3 server."""
    bucket = f"conveyor-{uuid.uuid4().hex[:12]}"
    previous = config.settings()
    current = config.configure(
        config.load_settings(
            {
                "CONVEYOR_BROKER": "stub",
                "CONVEYOR_VAR_DIR": str(tmp_path),
                "STORAGE_URL": f"s3://{bucket}/media",
                "S3_ENDPOINT_URL": moto_endpoint,
                "AWS_ACCESS_KEY_ID": "test-key-id",
                "AWS_SECRET_ACCESS_KEY": "test-secret-value",
                "AWS_DEFAULT_REGION": "eu-west-1",
            }
        )
    )
    raw_client(current).create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    yield current
    storage_module._storage.pop(current.storage_url, None)
    config.configure(previous)


def raw_client(settings: config.Settings):
    return boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        region_name=settings.aws_region,
        aws_access_key_id=settings.aws_access_key_id,
        aws_secret_access_key=settings.secret("aws_secret_access_key"),
    )


@pytest.fixture(params=["local", "s3"])
def backend(request, tmp_path):
    if request.param == "local":
        return LocalStorage(tmp_path / "files")
    settings = request.getfixturevalue("s3_settings")
    return S3Storage(bucket=settings.storage_url[len("s3://") :].split("/")[0], prefix="media")


def test_bytes_put_in_storage_come_back_by_every_route(backend, tmp_path):
    # Given a stored file
    data = os.urandom(70_000)
    backend.put_bytes("jobs/j1/a.bin", data, "application/octet-stream")
    # Then it exists, has its size, downloads, and streams
    assert backend.exists("jobs/j1/a.bin") and backend.size("jobs/j1/a.bin") == len(data)
    assert backend.download("jobs/j1/a.bin", tmp_path / "copy.bin").read_bytes() == data
    body = backend.open("jobs/j1/a.bin")
    try:
        assert body.read(10) == data[:10]
        assert body.read() == data[10:]
    finally:
        body.close()


def test_a_deleted_or_missing_file_is_reported_missing(backend, tmp_path):
    backend.put_bytes("jobs/j1/gone.txt", b"x")
    backend.delete("jobs/j1/gone.txt")
    assert not backend.exists("jobs/j1/gone.txt")
    with pytest.raises(StorageError):
        backend.download("jobs/j1/gone.txt", tmp_path / "x")
    with pytest.raises(StorageError):
        backend.open("jobs/j1/never")
    backend.delete("jobs/j1/never")  # deleting twice is not an error


def test_keys_that_could_escape_the_prefix_are_refused(backend):
    for key in ("../x", "/etc/passwd", "a//b", "a/./b", ""):
        with pytest.raises(StorageError):
            backend.put_bytes(key, b"x")


def test_a_large_file_is_uploaded_in_parts_and_read_back(s3_settings, tmp_path):
    # Given a file above the multipart threshold (16 MB)
    storage = get_storage()
    source = tmp_path / "big.bin"
    chunk = os.urandom(1024 * 1024)
    source.write_bytes(chunk * 17)
    # When it is stored and downloaded
    storage.put_file("jobs/j2/big.bin", source, "video/mp4")
    copy = storage.download("jobs/j2/big.bin", tmp_path / "back.bin")
    # Then the bytes are the same, under the configured prefix, with the content type kept
    assert copy.read_bytes() == source.read_bytes()
    bucket = s3_settings.storage_url[len("s3://") :].split("/")[0]
    head = raw_client(s3_settings).head_object(Bucket=bucket, Key="media/jobs/j2/big.bin")
    assert head["ContentLength"] == 17 * 1024 * 1024 and head["ContentType"] == "video/mp4"


def test_storage_url_s3_selects_s3_storage_with_the_configured_bucket(s3_settings):
    storage = get_storage()
    assert isinstance(storage, S3Storage)
    assert storage.bucket == s3_settings.storage_url.split("/")[2] and storage.prefix == "media"
    assert storage.local_path("jobs/x") is None


def test_stage_helpers_work_through_s3(s3_settings, tmp_path):
    # Given a stage output stored with the usual helper
    out = tmp_path / "notes.txt"
    out.write_text("hello")
    reference = store_output(out, job_id="job-1", name="notes.txt", content_type="text/plain")
    # When a later stage asks for a local copy
    with local_copy(reference) as path:
        # Then it gets a temporary file with the same content
        assert path.read_text() == "hello" and path.suffix == ".txt"
    assert not path.exists()


def test_a_presigned_url_downloads_the_bytes_as_a_named_attachment(s3_settings):
    # moto's server does not verify presigned signatures or expiry, so this checks the URL's
    # target, parameters and the attachment header, not that S3 would reject a tampered URL.
    storage = get_storage()
    storage.put_bytes("jobs/j3/v.mp4", b"video-bytes", "video/mp4")
    url = storage.presigned_url("jobs/j3/v.mp4", filename="scène 1.mp4", expires=600)
    assert url is not None, "S3 storage presigns its download URLs"
    assert url.startswith(s3_settings.s3_endpoint_url + "/")
    assert "X-Amz-Signature=" in url and "X-Amz-Expires=600" in url
    assert "test-secret-value" not in url
    response = httpx.get(url)
    assert response.status_code == 200 and response.content == b"video-bytes"
    disposition = response.headers["content-disposition"]
    assert disposition.startswith("attachment;") and "filename*=UTF-8''sc%C3%A8ne%201.mp4" in disposition


def test_content_disposition_names_cannot_break_the_header():
    header = content_disposition('../evil"\r\nX-Injected: 1.mp4')
    assert "\r" not in header and "\n" not in header
    assert header.startswith('attachment; filename="evil_')
    assert content_disposition("") == "attachment; filename=\"download\"; filename*=UTF-8''download"


def test_local_storage_has_no_presigned_url(tmp_path):
    assert LocalStorage(Path(tmp_path)).presigned_url("a/b", filename="b") is None


def test_a_job_folder_is_deleted_whole_and_only_it(backend):
    # Given two files in a job's folder (one nested) and one in a folder whose name starts the same
    backend.put_bytes("jobs/j2/chunk-1.wav", b"a")
    backend.put_bytes("jobs/j2/clips/scene-1.mp4", b"b")
    backend.put_bytes("jobs/j22/keep.txt", b"c")
    # When the folder of j2 is deleted
    assert backend.delete_folder("jobs/j2") == 2
    # Then its files are gone, the other folder's file stays, and deleting again finds nothing
    assert not backend.exists("jobs/j2/chunk-1.wav") and not backend.exists("jobs/j2/clips/scene-1.mp4")
    assert backend.exists("jobs/j22/keep.txt")
    assert backend.delete_folder("jobs/j2") == 0
