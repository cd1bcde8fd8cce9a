"""Visual stage actors and pipelines: called as stages, and run end to end by the engine."""

from __future__ import annotations

import io
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import pytest
from pydantic import ValidationError

from actors.context import StageContext, stage_context
from actors.errors import InvalidInput, PermanentError
from actors.files.keys import key_of, new_key, ref
from actors.files.storage import get_storage, local_copy
from actors.media.ffmpeg import probe, run_ffmpeg
from actors.providers.grade import PRESETS
from actors.providers.tts import synthesize_local
from actors.stages import visual as vs
from conveyor.config import configure, load_settings
from pipelines.catalog.visual import ColorGradeInput, VideoGenerationInput
from tests.support.media import duration_of
from tests.support.stages import Recorder

SCRIPT = (
    "The sun rises over a quiet harbour and the fishing boats head out.\n\n"
    "A young girl runs along the pier, waving at her father on the last boat.\n\n"
    "By evening the boats return, heavy with fish, and the whole village gathers."
)


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[Path]:
    configure(load_settings({**os.environ, "STORAGE_URL": f"file://{tmp_path / 'files'}"}))
    yield tmp_path / "files"
    configure()


def call(actor: Any, data: Any, **context: Any) -> Any:
    with stage_context(StageContext(job_id="job-1", **context)):
        return actor.fn(data)


def stored(path: Path, name: str) -> str:
    key = new_key("uploads", name)
    get_storage().put_file(key, path)
    return ref(key)


def face_photo() -> Path:
    cbook = pytest.importorskip("matplotlib.cbook")
    return Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def speaking_video(tmp_path: Path) -> Path:
    """A short video of a still portrait with speech."""
    speech = synthesize_local("Hello, my name is Grace, and I would like to tell you about computers.",
                              tmp_path / "speech.wav")
    video = tmp_path / "speaker.mp4"
    run_ffmpeg(["-f", "image2", "-loop", "1", "-i", str(face_photo()), "-i", str(speech), "-vf", "scale=256:304", "-r", "10",
                "-shortest", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", str(video)])
    return video


# --- inputs --------------------------------------------------------------------------------------


def test_a_script_shorter_than_sixty_characters_is_refused_by_the_input_model():
    with pytest.raises(ValidationError) as caught:
        VideoGenerationInput.model_validate({"script": "Too short."})
    assert caught.value.errors()[0]["loc"] == ("script",)
    with pytest.raises(ValidationError):
        VideoGenerationInput.model_validate({"script": " " * 50 + "short" + " " * 50})
    with pytest.raises(ValidationError):
        VideoGenerationInput.model_validate({"script": SCRIPT, "max_scenes": 21})
    assert VideoGenerationInput.model_validate({"script": SCRIPT}).max_scenes == 6


def test_an_unknown_preset_is_refused_by_the_input_model_and_the_presets_agree():
    with pytest.raises(ValidationError) as caught:
        ColorGradeInput.model_validate({"video": "file:abc", "preset": "sepia"})
    assert caught.value.errors()[0]["loc"] == ("preset",)
    assert set(get_args(ColorGradeInput.model_fields["preset"].annotation)) == set(PRESETS)


# --- video_generation ----------------------------------------------------------------------------


@pytest.mark.slow
def test_scenes_are_rendered_and_joined_with_failed_ones_reported(storage):
    # Given a three-scene script whose second scene fails on purpose
    items = call(vs.plan_scenes, {"script": SCRIPT, "max_scenes": 6, "fail_scenes": [2]})
    assert [i["scene_number"] for i in items] == [1, 2, 3]
    # When each scene is rendered as a fan-out item, failures kept as the engine keeps them
    recorder, outputs = Recorder(), []
    for index, item in enumerate(items):
        with stage_context(StageContext(job_id="job-1", item=index, items_total=3, reporter=recorder)):
            try:
                outputs.append(vs.render_scene.fn(item))
            except PermanentError as exc:
                outputs.append({"error": {"code": exc.code, "message": exc.message}})
    result = call(vs.join_scenes, outputs)
    # Then the result reports every scene and joins the two that succeeded
    assert "Generating scene 2 of 3" in recorder.messages
    assert [s["status"] for s in result["scenes"]] == ["completed", "failed", "completed"]
    assert result["scenes"][1]["error"]["code"] == "scene_failed" and result["scenes"][1]["video_url"] is None
    assert [s["description"] for s in result["storyboard"]] == SCRIPT.split("\n\n")
    scene_seconds = 0.0
    for scene in (result["scenes"][0], result["scenes"][2]):
        with local_copy(scene["video_url"]) as path:
            scene_seconds += duration_of(path)
    with local_copy(result["video_url"]) as path:
        info = probe(path)
    assert info.has_video and info.has_audio
    assert info.duration == pytest.approx(scene_seconds, abs=0.2)


def test_joining_fails_when_no_scene_succeeded(storage):
    outputs = [{"error": {"code": "provider_failed", "message": "no luck"}}] * 2
    with pytest.raises(PermanentError, match="no luck") as caught:
        call(vs.join_scenes, outputs)
    assert caught.value.code == "no_scenes"


def test_planning_refuses_a_short_script_and_a_bad_scene_limit(storage):
    with pytest.raises(InvalidInput):
        call(vs.plan_scenes, {"script": "short"})
    with pytest.raises(InvalidInput):
        call(vs.plan_scenes, {"script": SCRIPT, "max_scenes": 50})


# --- persona and talking_video -------------------------------------------------------------------


@pytest.mark.slow
def test_a_persona_is_built_in_branches_and_then_speaks(storage, tmp_path):
    # Given a speaking video and a portrait
    data = {"name": "Grace", "video": stored(speaking_video(tmp_path), "v.mp4"),
            "photo": stored(face_photo(), "p.jpg")}
    # When the persona stages run (the branches on the same input, then the join)
    prepared = call(vs.prepare_persona, data)
    branches = {name: call(actor, prepared) for name, actor in
                (("audio", vs.persona_audio), ("voice", vs.persona_voice), ("avatar", vs.persona_avatar))}
    persona = call(vs.join_persona, branches)
    # Then the persona has the voice's audio, a local voice profile and a face avatar
    with local_copy(persona["audio_url"]) as audio:
        assert probe(audio).has_audio and not probe(audio).has_video
    assert json.loads(persona["voice_id"])["provider"] == "local"
    assert persona["avatar_id"].startswith("storage:")
    # And a talking video made from it has picture and sound of the speech's length
    spoken = call(vs.speak_text, {"persona_job": "p", "text": "Computers are tools.", "persona": persona})
    talking = call(vs.animate_avatar, spoken)
    with local_copy(talking["audio_url"]) as audio, local_copy(talking["video_url"]) as video:
        speech, clip = probe(audio), probe(video)
    assert clip.has_video and clip.has_audio and (clip.width, clip.height) == (512, 512)
    assert clip.duration == pytest.approx(speech.duration, abs=0.15)


def test_a_talking_video_needs_the_resolved_persona(storage):
    with pytest.raises(InvalidInput, match="persona"):
        call(vs.speak_text, {"persona_job": "abc", "text": "Hello"})
    with pytest.raises(InvalidInput, match="avatar id"):
        call(vs.speak_text, {"text": "Hello", "persona": {"voice_id": "{}", "avatar_id": "not-an-avatar"}})


def test_a_persona_video_without_sound_is_refused(storage, tmp_path):
    silent = tmp_path / "silent.mp4"
    run_ffmpeg(["-f", "lavfi", "-i", "testsrc=size=160x96:rate=10", "-t", "1", "-pix_fmt", "yuv420p", str(silent)])
    with pytest.raises(PermanentError, match="no audio"):
        call(vs.prepare_persona, {"name": "x", "video": stored(silent, "s.mp4"),
                                  "photo": stored(face_photo(), "p.jpg")})


# --- color_grade and roto ------------------------------------------------------------------------


def test_the_grade_stage_stores_a_graded_video(storage, tmp_path):
    source = tmp_path / "in.mp4"
    run_ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=160x96:rate=10", "-t", "1", "-pix_fmt", "yuv420p", str(source)])
    result = call(vs.grade_video, {"video": stored(source, "in.mp4"), "preset": "Noir"})
    assert result["preset"] == "noir"
    with local_copy(result["video_url"]) as path:
        assert probe(path).duration == pytest.approx(1.0, abs=0.1)
    with pytest.raises(InvalidInput):
        call(vs.grade_video, {"video": stored(source, "in.mp4"), "preset": "sepia"})


def test_the_roto_stage_stores_a_matte_and_a_mask(storage, tmp_path):
    source = tmp_path / "in.mp4"
    run_ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=160x96:rate=10", "-t", "1", "-pix_fmt", "yuv420p", str(source)])
    result = call(vs.roto_video, {"video": stored(source, "in.mp4"), "description": "the test pattern"})
    with local_copy(result["video_url"]) as matte:
        info = probe(matte)
    assert info.has_video and (info.width, info.height) == (160, 96)
    assert key_of(result["mask_url"]).endswith(".png")


# --- end to end through the engine ---------------------------------------------------------------


@pytest.fixture
def visual_pipelines(stub_worker):
    return stub_worker


def upload(path: Path) -> str:
    from pipelines.services.files import save_upload

    with path.open("rb") as stream:
        return "file:" + save_upload(io.BytesIO(stream.read()), filename=path.name, user_id=None,
                                     max_bytes=10**8)["id"]


def test_a_video_generation_job_completes_with_a_tolerated_scene_failure(visual_pipelines):
    from pipelines.services.jobs import start_job
    from tests.support.jobs import wait_for_job

    job = start_job(pipeline="video_generation", input={"script": SCRIPT, "fail_scenes": [3]})
    done = wait_for_job(job["id"], timeout=120)
    assert done["status"] == "completed", done["error"]
    assert [(e["stage"], e["item"]) for e in done["errors"]] == [("scenes", 2)]
    result = done["result"]
    assert [s["status"] for s in result["scenes"]] == ["completed", "completed", "failed"]
    assert result["video_url"].startswith("/api/files/")
    assert done["stages"][1]["items"] == {"total": 3, "completed": 2, "failed": 1}


@pytest.mark.slow
def test_a_talking_video_job_uses_a_completed_persona_job(visual_pipelines, tmp_path):
    from conveyor.errors import InvalidJobInput
    from pipelines.services.jobs import start_job
    from tests.support.jobs import wait_for_job

    photo = tmp_path / "photo.jpg"
    shutil.copy(face_photo(), photo)
    persona_job = start_job(pipeline="persona", input={"name": "Grace", "video": upload(speaking_video(tmp_path)),
                                                       "photo": upload(photo)})
    persona = wait_for_job(persona_job["id"], timeout=120)
    assert persona["status"] == "completed", persona["error"]
    assert set(persona["result"]) == {"audio_url", "voice_id", "avatar_id"}

    talk = wait_for_job(start_job(pipeline="talking_video",
                                  input={"persona_job": persona["id"], "text": "Hello there."})["id"], timeout=120)
    assert talk["status"] == "completed", talk["error"]
    assert talk["result"]["video_url"].startswith("/api/files/")

    with pytest.raises(InvalidJobInput, match="persona"):
        start_job(pipeline="talking_video", input={"persona_job": talk["id"], "text": "Hello."})
