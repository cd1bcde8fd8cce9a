"""Case 18: corrupt or empty media fails the job at once with ``invalid_media``, and is never retried."""

from __future__ import annotations

import io
import random
import struct
import time
from pathlib import Path

import pytest
from flask import Blueprint, Response

from conveyor.config import configure, settings
from tests.emulator import start_emulator
from tests.support.jobs import wait_for_job

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "lecture.mp3"
NOISE = random.Random(7).randbytes(64 * 1024)


def wav(samples: bytes, *, declared: int | None = None) -> bytes:
    """A PCM WAV (16 kHz mono 16-bit) around ``samples``; ``declared`` lies about the data size."""
    size = len(samples) if declared is None else declared
    fmt = struct.pack("<HHIIHH", 1, 1, 16000, 32000, 2, 16)
    return b"RIFF" + struct.pack("<I", 36 + size) + b"WAVEfmt " + struct.pack("<I", 16) + fmt + b"data" + \
        struct.pack("<I", size) + samples


#: Files that pass the upload's sniffing (they start like media) but hold no playable media.
CORRUPT = {
    "mp3 header then noise": b"ID3\x03\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x64" + NOISE,
    "mpeg frame sync then noise": b"\xff\xfb\x90\x64" + b"\x00" * 16 + NOISE,
    "wav without samples": wav(b""),
    "wav lying about its size": wav(b"", declared=10_000_000),
    "mp4 box then noise": b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + NOISE,
    "ogg page then noise": b"OggS\x00\x02" + b"\x00" * 20 + NOISE,
    "flac marker then noise": b"fLaC" + NOISE,
    "png instead of audio": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 64,
    "id3 tag and nothing else": b"ID3\x03\x00\x00\x00\x00\x00\x0a" + b"\x00" * 10,
}
#: Pipelines whose first stage reads the uploaded media, and the input field naming it.
AUDIO_PIPELINES = [("noise_removal", "audio"), ("audio_clean", "audio"), ("lecture_notes", "audio"),
                   ("subtitles", "media")]


def upload(client, auth, data: bytes, name: str) -> str:
    response = client.post("/api/files", data={"file": (io.BytesIO(data), name)}, headers=auth,
                           content_type="multipart/form-data")
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def assert_failed_at_once(job: dict, started: float, stage: str | None = None) -> None:
    """Failed with invalid_media in one stage run (``stage``, if given): one attempt, nothing after it ran."""
    assert job["status"] == "failed", job
    assert job["error"]["code"] == "invalid_media", job["error"]
    names = [s["name"] for s in job["stages"]]
    failed = names.index(job["error"]["stage"])
    assert stage is None or names[failed] == stage
    assert job["stages"][failed]["status"] == "failed" and job["stages"][failed]["attempts"] == 1
    assert all(s["status"] == "completed" for s in job["stages"][:failed])
    assert all(s["attempts"] == 0 for s in job["stages"][failed + 1:])
    assert time.monotonic() - started < 20  # no backoff was waited out


@pytest.mark.parametrize(("pipeline", "field"), AUDIO_PIPELINES)
@pytest.mark.parametrize("kind", list(CORRUPT))
def test_corrupt_audio_fails_the_job_at_once_without_retries(client, auth, stub_worker, pipeline, field, kind):
    file_id = upload(client, auth, CORRUPT[kind], "lecture.mp3")
    started = time.monotonic()
    response = client.post("/api/jobs", headers=auth, json={"pipeline": pipeline, "input": {field: f"file:{file_id}"}})
    assert response.status_code == 202
    job = wait_for_job(response.get_json()["id"], timeout=30)
    assert_failed_at_once(job, started)
    events = client.get(f"/api/jobs/{job['id']}/events", headers=auth).data.decode()
    assert events.count("event: status") >= 1 and '"status":"failed"' in events


@pytest.mark.parametrize(("pipeline", "extra"), [("color_grade", {"preset": "warm"}), ("roto", {})])
@pytest.mark.parametrize("kind", ["mp4 box then noise", "png instead of audio", "mp3 header then noise",
                                  "wav without samples"])
def test_corrupt_video_fails_the_job_at_once_without_retries(client, auth, stub_worker, pipeline, extra, kind):
    file_id = upload(client, auth, CORRUPT[kind], "clip.mp4")
    started = time.monotonic()
    job = client.post("/api/jobs", headers=auth,
                      json={"pipeline": pipeline, "input": {"video": f"file:{file_id}", **extra}}).get_json()
    job = wait_for_job(job["id"], timeout=30)
    assert_failed_at_once(job, started)


@pytest.fixture
def empty_server():
    """A loopback server whose media is empty (test-only override: loopback URLs may be fetched)."""
    before = settings()
    configure(before, fetch_allow_loopback=True)
    bp = Blueprint("empty", __name__)
    bp.add_url_rule("/lecture.mp3", "empty", lambda: Response(b"", mimetype="audio/mpeg"))
    bp.add_url_rule("/silence.wav", "silence", lambda: Response(wav(b""), mimetype="audio/wav"))
    server = start_emulator(bp)
    yield server
    server.stop()
    configure(before)


@pytest.mark.parametrize("path", ["/lecture.mp3", "/silence.wav"])
def test_empty_media_from_a_url_fails_the_job_at_once_without_retries(client, auth, stub_worker, empty_server, path):
    started = time.monotonic()
    job = client.post("/api/jobs", headers=auth,
                      json={"pipeline": "noise_removal", "input": {"audio": empty_server.url(path)}}).get_json()
    job = wait_for_job(job["id"], timeout=30)
    assert_failed_at_once(job, started, "denoise")
    assert len(empty_server.calls) == 1  # fetched once: not retried


def test_an_empty_upload_is_refused_before_any_job(client, auth):
    response = client.post("/api/files", data={"file": (io.BytesIO(b""), "empty.mp3")}, headers=auth,
                           content_type="multipart/form-data")
    assert response.status_code == 415


def test_a_good_file_passes_the_same_path(client, auth, stub_worker):
    # The same route with real audio completes, so the failures above come from the media itself
    file_id = upload(client, auth, SAMPLE.read_bytes(), "lecture.mp3")
    job = client.post("/api/jobs", headers=auth, json={"pipeline": "audio_clean", "input": {"audio": f"file:{file_id}"}})
    done = wait_for_job(job.get_json()["id"], timeout=120)
    assert done["status"] == "completed", done["error"]
