"""Warnings: a job whose stages could not do all that was asked completes, and says so in its JSON."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from actors.context import StageContext, stage_context
from actors.media.ffmpeg import run_ffmpeg
from actors.media.video import write_frames
from actors.providers.roto import WEAK_SUBJECT_SHARE, BestMask
from tests.support.jobs import wait_for_job
from tests.support.web import submit

#: A script of one run-on sentence (no paragraph, no sentence end): the storyboard falls back to chunks.
RUN_ON_SCRIPT = " ".join(["and then the harbour lights came on one by one while the boats rocked"] * 12)


@pytest.fixture
def visual(stub_worker):
    return stub_worker  # the visual pipelines are registered by the composition root


def upload(client: Any, auth: dict[str, str], path: Path) -> str:
    response = client.post("/api/files", data={"file": (io.BytesIO(path.read_bytes()), path.name)}, headers=auth,
                           content_type="multipart/form-data")
    assert response.status_code == 201, response.get_json()
    return "file:" + response.get_json()["id"]


def finished(client: Any, auth: dict[str, str], job: dict[str, Any], timeout: float = 120) -> dict[str, Any]:
    wait_for_job(job["id"], timeout=timeout)
    answer = client.get(f"/api/jobs/{job['id']}", headers=auth)
    assert answer.status_code == 200
    return answer.get_json()


def test_a_stage_context_outside_the_engine_keeps_each_warning_once():
    ctx = StageContext()
    ctx.warn("no_face_found", "no face")
    ctx.warn("no_face_found", "no face")
    ctx.warn("other", "x" * 2000)
    assert [w["code"] for w in ctx.warnings] == ["no_face_found", "other"]
    assert len(ctx.warnings[1]["message"]) == 500


def test_the_mask_is_the_frame_with_the_largest_confident_subject_area():
    # Given matte frames where the subject grows, then is cut off, and a frame of soft (unsure) matte
    frames = [np.zeros((10, 10), np.uint8) for _ in range(4)]
    frames[0][:2, :2] = 255
    frames[1][:5, :5] = 255
    frames[2][:, :] = 200  # all of it unsure
    frames[3][:1, :1] = 255
    best = BestMask()
    for index, frame in enumerate(frames):
        best.offer(index, frame)
    # Then the frame with the most pixels surely the subject is chosen, and no warning is due
    assert (best.index, best.share) == (1, 0.25)
    with stage_context(StageContext()) as ctx:
        best.warn_if_weak()
    assert ctx.warnings == []


def test_a_new_job_has_an_empty_warnings_list(client, auth):
    job = submit(client, auth, "noop_chain", input={"x": 1})
    assert job["warnings"] == []


def test_a_warning_repeated_by_a_retried_attempt_is_listed_once(client, auth, stub_worker):
    # Given an item that warns on every attempt and fails its first one
    job = submit(client, auth, "demo", input={"items": 2, "warn_items": [1], "fail_items": [1],
                                              "fail_mode": "transient", "fail_times": 1})
    done = finished(client, auth, job)
    # Then the job completes after the retry, with the warning once
    assert done["status"] == "completed"
    assert done["stages"][1]["attempts"] >= 1
    assert done["warnings"] == [{"code": "demo_warning", "message": "item 1 made do", "stage": "work"}]


def test_a_storyboard_cut_into_chunks_completes_with_a_warning(client, auth, visual):
    job = submit(client, auth, "video_generation", input={"script": RUN_ON_SCRIPT, "max_scenes": 2})
    done = finished(client, auth, job)
    assert done["status"] == "completed", done["error"]
    assert [(w["code"], w["stage"]) for w in done["warnings"]] == [("storyboard_fallback", "storyboard")]
    assert "280 characters" in done["warnings"][0]["message"]


def test_a_persona_photo_with_no_face_completes_with_a_warning(client, auth, visual, tmp_path):
    # Given a photo of a gradient (no face) and a short video with sound
    photo = tmp_path / "wall.png"
    Image.fromarray(np.tile(np.linspace(40, 220, 240, dtype=np.uint8), (200, 1)), "L").convert("RGB").save(photo)
    video = tmp_path / "voice.mp4"
    run_ffmpeg(["-f", "lavfi", "-i", "testsrc=size=160x96:rate=10", "-f", "lavfi", "-i", "sine=frequency=180",
                "-t", "2", "-pix_fmt", "yuv420p", "-c:a", "aac", str(video)])
    # When a persona is made from them
    job = submit(client, auth, "persona", input={"name": "Wall", "video": upload(client, auth, video),
                                                 "photo": upload(client, auth, photo)})
    done = finished(client, auth, job)
    # Then it completes with its avatar, and says no face was found
    assert done["status"] == "completed", done["error"]
    assert done["result"]["avatar_id"]
    assert [(w["code"], w["stage"]) for w in done["warnings"]] == [("no_face_found", "avatar")]


def test_a_roto_job_whose_subject_is_barely_visible_completes_with_a_warning(client, auth, visual, tmp_path):
    # Given a textured background crossed by a dot a few pixels wide
    rng = np.random.default_rng(3)
    background = np.clip(rng.normal(120, 12, (96, 160, 3)), 0, 255).astype(np.uint8)
    frames = []
    for i in range(20):
        frame = background.copy()
        frame[44:52, 20 + 5 * i: 28 + 5 * i] = (240, 30, 30)
        frames.append(frame)
    video = tmp_path / "dot.mp4"
    write_frames(frames, video, size=(160, 96), fps=10)
    # When it is rotoscoped
    done = finished(client, auth, submit(client, auth, "roto", input={"video": upload(client, auth, video)}))
    # Then the job completes, and warns that the mask hardly shows the subject
    assert done["status"] == "completed", done["error"]
    assert [w["code"] for w in done["warnings"]] == ["weak_subject_mask"]
    share = float(done["warnings"][0]["message"].split("sure of only ")[1].split("%")[0]) / 100
    assert share < WEAK_SUBJECT_SHARE
