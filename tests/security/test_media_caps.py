"""Issue 14, break 4: media over the caps is refused with ``media_too_large`` before any fan-out.

A 2 MB FLAC of three hours of silence became 180 transcription and 180 summary items; a 10000×10000
video and a 9000×9000 PNG took a worker to 1.7 GB. Caps on duration, frame size and image pixels
are checked at submission for an uploaded file (from its probe at upload), and by the stage that
runs before any fan-out for a URL. The caps are lowered here so the media stays small; the code
path is the one the defaults take.
"""

from __future__ import annotations

import io

import pytest
from flask import Blueprint, Response
from PIL import Image

from actors.media.caps import over_caps
from actors.media.ffmpeg import run_ffmpeg
from conveyor.config import configure, load_settings, settings
from tests.emulator import start_emulator
from tests.support.jobs import wait_for_job


@pytest.fixture
def caps(db):
    configure(settings(), max_media_seconds=30.0, max_frame_pixels=200 * 200, max_image_pixels=250 * 250)


@pytest.fixture
def long_silence(tmp_path) -> bytes:
    path = tmp_path / "silence.flac"
    run_ffmpeg(["-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono", "-t", "90", "-c:a", "flac", str(path)])
    return path.read_bytes()


@pytest.fixture
def wide_video(tmp_path) -> bytes:
    path = tmp_path / "wide.mp4"
    run_ffmpeg(["-f", "lavfi", "-i", "testsrc=size=320x240:rate=5:duration=1", "-f", "lavfi", "-i",
                "sine=duration=1", "-shortest", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", str(path)])
    return path.read_bytes()


def big_png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (300, 300), "white").save(out, "PNG")
    return out.getvalue()


def upload(client, auth, data: bytes, name: str) -> str:
    response = client.post("/api/files", data={"file": (io.BytesIO(data), name)}, headers=auth,
                           content_type="multipart/form-data")
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def test_the_caps_have_their_defaults_and_settings():
    defaults = load_settings({})
    assert defaults.max_media_seconds == 4 * 3600
    assert defaults.max_frame_pixels == 7680 * 4320 and defaults.max_image_pixels == 40_000_000
    assert load_settings({"CONVEYOR_MAX_MEDIA_SECONDS": "60"}).max_media_seconds == 60


def refusal(duration: float | None, width: int | None, height: int | None, *, image: bool = False) -> str:
    """Why the caps refuse media of this duration and size; fails the test when they accept it."""
    reason = over_caps(duration, width, height, image=image)
    assert reason is not None, f"media of {duration} s at {width}x{height} should be over the caps"
    return reason


def test_default_caps_refuse_three_hours_over_four_and_a_10000_square_frame(db):
    assert over_caps(3 * 3600.0, 1920, 1080) is None
    assert "CONVEYOR_MAX_MEDIA_SECONDS" in refusal(4 * 3600.0 + 1, None, None)
    assert "CONVEYOR_MAX_FRAME_PIXELS" in refusal(1.0, 10000, 10000)
    assert "CONVEYOR_MAX_IMAGE_PIXELS" in refusal(None, 9000, 9000, image=True)
    assert over_caps(None, 7680, 4320) is None


def test_an_uploaded_long_recording_is_refused_at_submission(client, auth, caps, long_silence):
    file_id = upload(client, auth, long_silence, "silence.flac")
    response = client.post("/api/jobs", headers=auth,
                           json={"pipeline": "lecture_notes", "input": {"audio": f"file:{file_id}"}})
    assert response.status_code == 422, response.get_json()
    (error,) = response.get_json()["errors"]
    assert error["field"] == "input.audio" and error["code"] == "media_too_large"
    assert "CONVEYOR_MAX_MEDIA_SECONDS" in error["message"]


def test_an_uploaded_large_frame_and_image_are_refused_at_submission(client, auth, caps, wide_video):
    video = upload(client, auth, wide_video, "wide.mp4")
    graded = client.post("/api/jobs", headers=auth,
                         json={"pipeline": "color_grade", "input": {"video": f"file:{video}", "preset": "warm"}})
    assert graded.status_code == 422 and graded.get_json()["errors"][0]["code"] == "media_too_large"
    photo = upload(client, auth, big_png(), "me.png")
    persona = client.post("/api/jobs", headers=auth, json={"pipeline": "persona", "input": {
        "name": "Ann", "video": f"file:{video}", "photo": f"file:{photo}"}})
    fields = {e["field"]: e.get("code") for e in persona.get_json().get("errors", [])}
    assert persona.status_code == 422 and fields.get("input.photo") == "media_too_large", persona.get_json()


@pytest.fixture
def media_server(long_silence, wide_video):
    before = settings()
    configure(before, fetch_allow_loopback=True)
    bp = Blueprint("media", __name__)
    bp.add_url_rule("/silence.flac", "silence", lambda: Response(long_silence, mimetype="audio/flac"))
    bp.add_url_rule("/wide.mp4", "wide", lambda: Response(wide_video, mimetype="video/mp4"))
    server = start_emulator(bp)
    yield server
    server.stop()


def test_a_long_recording_from_a_url_fails_before_the_fan_out(client, auth, caps, stub_worker, media_server):
    job = client.post("/api/jobs", headers=auth, json={
        "pipeline": "lecture_notes", "input": {"audio": media_server.url("/silence.flac")}}).get_json()
    job = wait_for_job(job["id"], timeout=60)
    assert job["status"] == "failed" and job["error"]["code"] == "media_too_large", job["error"]
    first, *later = job["stages"]
    assert job["error"]["stage"] == first["name"] and first["attempts"] == 1
    assert all(s["attempts"] == 0 and not (s.get("items") or {}).get("total") for s in later), later  # no item


def test_a_large_frame_from_a_url_fails_before_any_work(client, auth, caps, stub_worker, media_server):
    job = client.post("/api/jobs", headers=auth, json={
        "pipeline": "color_grade", "input": {"video": media_server.url("/wide.mp4"), "preset": "warm"}}).get_json()
    job = wait_for_job(job["id"], timeout=60)
    assert job["status"] == "failed" and job["error"]["code"] == "media_too_large", job["error"]
