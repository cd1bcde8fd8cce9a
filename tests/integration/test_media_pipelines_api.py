"""Every media pipeline end to end through the REST API, on Redis + PostgreSQL with a real worker
process and the local providers: inputs uploaded, outputs downloaded and read back with ffmpeg."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from actors.media.ffmpeg import probe, run_ffmpeg
from conveyor.statuses import TERMINAL
from pipelines.services.users import create_user
from tests.support.media import duration_of
from tests.support.workers import WorkerProcess

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ("A lighthouse keeper climbs the stairs at dusk. The lamp is lit and turns slowly over the sea.\n\n"
          "A small boat finds its way home through the fog, guided by the beam.")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def storage_url(tmp_path_factory) -> str:
    """Web and worker share one storage, as in production."""
    return f"file://{tmp_path_factory.mktemp('files')}"


@pytest.fixture(scope="module")
def worker(storage_url):
    process = WorkerProcess(threads=4, extra_env={"STORAGE_URL": storage_url})
    yield process
    process.stop()


@pytest.fixture(scope="module")
def api(storage_url, worker):
    from conveyor.config import configure, settings
    from web.app import create_app

    before = settings()
    configure(before, storage_url=storage_url)
    client = create_app({"TESTING": True}).test_client()
    user = create_user("media")
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {user.token}"
    yield client
    configure(before)


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("media")
    clip = folder / "talk.mp4"
    run_ffmpeg(["-f", "lavfi", "-i", "testsrc=size=320x240:rate=15:duration=3", "-i", str(ROOT / "samples" /
               "lecture.mp3"), "-t", "3", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest",
               str(clip)])
    from matplotlib import cbook

    return {"audio": ROOT / "samples" / "lecture.mp3", "video": clip,
            "photo": Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))}


def upload(api, path: Path) -> str:
    with path.open("rb") as stream:
        response = api.post("/api/files", data={"file": (stream, path.name)}, content_type="multipart/form-data")
    assert response.status_code == 201, response.get_json()
    return f"file:{response.get_json()['id']}"


def run(api, pipeline: str, job_input: dict, timeout: float = 240) -> dict:
    created = api.post("/api/jobs", json={"pipeline": pipeline, "input": job_input})
    assert created.status_code == 202, created.get_json()
    deadline = time.monotonic() + timeout
    while (job := api.get(created.headers["Location"]).get_json())["status"] not in TERMINAL:
        assert time.monotonic() < deadline, job
        time.sleep(0.5)
    assert job["status"] == "completed", (job["error"], job["errors"])
    assert job["progress"] == 100.0
    return job


def download(api, url: str, folder: Path, name: str) -> Path:
    response = api.get(url)
    assert response.status_code == 200
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    target = folder / name
    target.write_bytes(response.data)
    return target


def test_audio_pipelines_through_the_api(api, media, tmp_path):
    audio = upload(api, media["audio"])
    notes = run(api, "lecture_notes", {"audio": audio})["result"]
    assert notes["title"] and notes["summary"] and notes["sections"] and notes["key_takeaways"]
    assert "photosynthesis" in notes["transcript"].lower()
    subtitles = run(api, "subtitles", {"media": upload(api, media["video"]), "format": "vtt"})["result"]
    text = download(api, subtitles["subtitles_url"], tmp_path, "subs.vtt").read_text()
    assert text.startswith("WEBVTT") and "-->" in text
    for pipeline in ("noise_removal", "audio_clean"):
        result = run(api, pipeline, {"audio": audio})["result"]
        info = probe(download(api, result["audio_url"], tmp_path, f"{pipeline}.out"))
        assert info.has_audio and info.duration and abs(info.duration - duration_of(media["audio"])) < 1.0


def test_visual_pipelines_through_the_api(api, media, tmp_path):
    generated = run(api, "video_generation", {"script": SCRIPT, "max_scenes": 2})["result"]
    assert [s["status"] for s in generated["scenes"]] == ["completed", "completed"]
    video = probe(download(api, generated["video_url"], tmp_path, "story.mp4"))
    assert video.has_video and video.has_audio and (video.duration or 0) > 1

    video_ref, photo_ref = upload(api, media["video"]), upload(api, media["photo"])
    persona = run(api, "persona", {"name": "Grace", "video": video_ref, "photo": photo_ref})
    assert persona["result"]["voice_id"] and persona["result"]["avatar_id"]
    talking = run(api, "talking_video", {"persona_job": persona["id"], "text": "Hello from the lighthouse."})
    spoken = probe(download(api, talking["result"]["video_url"], tmp_path, "talking.mp4"))
    assert spoken.has_video and spoken.has_audio

    graded = run(api, "color_grade", {"video": video_ref, "preset": "noir"})["result"]
    assert probe(download(api, graded["video_url"], tmp_path, "noir.mp4")).has_video
    roto = run(api, "roto", {"video": video_ref})["result"]
    assert probe(download(api, roto["video_url"], tmp_path, "matte.mp4")).has_video
    assert api.get(roto["mask_url"]).status_code == 200
