"""Stage actors of the visual pipelines: video generation, persona, talking video, colour grade, roto.

``video_generation``: plan_scenes -> render_scene (one message per scene, failures tolerated)
-> join_scenes. ``persona``: prepare_persona -> (persona_audio | persona_voice | persona_avatar)
in parallel -> join_persona. ``talking_video``: speak_text -> animate_avatar. ``color_grade``:
grade_video. ``roto``: roto_video.

Contract of ``talking_video`` with the engine: the job input names a completed persona job
(``persona_job``). Before the first stage runs, the web/engine layer resolves it into that job's
stored result and passes it as ``input["persona"] = {"voice_id", "avatar_id", "audio_url"}``, with
``storage:<key>`` references (not download URLs). :func:`speak_text` refuses an input without it.

Media inputs (``video``, ``photo``) are ``storage:`` references or ``https://`` URLs, fetched once
per stage with :func:`actors.files.fetch.stored_input`.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from actors.context import current_stage
from actors.errors import InvalidInput, InvalidMedia, PermanentError
from actors.files.fetch import stored_input
from actors.files.keys import is_ref, key_of
from actors.files.storage import get_storage, local_copy, store_output
from actors.media.caps import check_image, check_media
from actors.media.ffmpeg import probe
from actors.media.video import concat_clips, extract_audio
from actors.providers.avatar import avatar_maker, parse_avatar_id
from actors.providers.grade import check_preset, grade
from actors.providers.roto import roto_provider
from actors.providers.scene_video import scene_video_maker, storyboard
from actors.providers.talking import talking_video_maker
from actors.providers.tts import speak
from actors.providers.voice import voice_cloner
from actors.stage import stage_actor
from actors.stage_inputs import (
    GradeInput,
    PersonaBranches,
    PersonaSources,
    PlanScenesInput,
    PreparedPersona,
    RotoInput,
    SceneInput,
    SpeakTextInput,
    SpeechInput,
)

DEFAULT_MAX_SCENES = 6
MAX_SCENES = 20
VOICE_SAMPLE_SECONDS = 180.0  #: s of the persona video used to profile or clone the voice


@contextmanager
def _workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="conveyor-visual-") as tmp:
        yield Path(tmp)


# --- video_generation ----------------------------------------------------------------------------


@stage_actor(input=PlanScenesInput, retries=1, time_limit=60.0)
def plan_scenes(data: PlanScenesInput) -> list[dict[str, Any]]:
    """Cut the script into a storyboard; returns one item per scene for :func:`render_scene`.

    The storyboard is stored as JSON so the last stage can report every scene, failed ones too.
    ``fail_scenes`` (a testing aid) marks scene numbers that must fail, to exercise the
    ``tolerate`` policy.
    """
    script = data.script
    if script is None or len(script.strip()) < 60:
        raise InvalidInput("script must be at least 60 characters")
    max_scenes = data.max_scenes or DEFAULT_MAX_SCENES
    if not 1 <= max_scenes <= MAX_SCENES:
        raise InvalidInput(f"max_scenes must be between 1 and {MAX_SCENES}")
    fail = set(data.fail_scenes or [])
    ctx = current_stage()
    ctx.progress(0.2, "Writing the storyboard")
    scenes = storyboard(script, max_scenes)
    with _workdir() as tmp:
        path = tmp / "storyboard.json"
        path.write_text(json.dumps(scenes, ensure_ascii=False))
        board = store_output(path, job_id=ctx.job_id, name="storyboard.json", content_type="application/json")
    return [{**scene, "scenes_total": len(scenes), "storyboard": board,
             **({"fail": True} if scene["scene_number"] in fail else {})} for scene in scenes]


@stage_actor(input=SceneInput, retries=2, time_limit=900.0, max_wait=3600.0)
def render_scene(item: SceneInput) -> dict[str, Any]:
    """Render one scene's clip; returns ``{"scene_number", "description", "video_url", "storyboard"}``."""
    ctx = current_stage()
    number = item.scene_number if item.scene_number is not None else (ctx.item or 0) + 1
    total = ctx.items_total or item.scenes_total or number
    ctx.progress(0.05, f"Generating scene {number} of {total}")
    if item.fail:
        raise PermanentError(f"scene {number} was asked to fail (fail_scenes)", code="scene_failed")
    description = (item.description or "").strip()
    if not description:
        raise InvalidInput(f"scene {number} has no description")
    with _workdir() as tmp:
        clip = scene_video_maker().render(description, scene_number=number, scenes_total=total, work_dir=tmp)
        ctx.progress(0.9, f"Storing scene {number} of {total}")
        video = store_output(clip, job_id=ctx.job_id, name=f"scene-{number}.mp4", content_type="video/mp4")
    return {"scene_number": number, "description": description, "video_url": video,
            "storyboard": item.storyboard}


def _error_of(output: Any) -> dict[str, str] | None:
    if isinstance(output, dict) and "error" in output and "video_url" not in output:
        error = output["error"]
        if isinstance(error, dict):
            return {"code": str(error.get("code", "stage_error")), "message": str(error.get("message", ""))}
        return {"code": "stage_error", "message": str(error)}
    return None


@stage_actor(retries=2, time_limit=900.0)
def join_scenes(outputs: list[Any]) -> dict[str, Any]:
    """Join the scenes that succeeded into one video, reporting each scene's outcome.

    Raises:
      PermanentError: when no scene succeeded.
    """
    if not isinstance(outputs, list) or not outputs:
        raise InvalidInput("join_scenes expects the list of scene results")
    ctx = current_stage()
    done = [o for o in outputs if _error_of(o) is None and isinstance(o, dict) and is_ref(o.get("video_url"))]
    if not done:
        first = next((e for e in map(_error_of, outputs) if e), {"message": "no output"})
        raise PermanentError(f"no scene could be generated: {first['message']}", code="no_scenes")
    with get_storage().open(key_of(done[0]["storyboard"])) as stream:
        board: list[dict[str, Any]] = json.loads(stream.read())
    by_number = {int(o["scene_number"]): o for o in done}
    scenes = []
    for index, scene in enumerate(board):
        number = int(scene["scene_number"])
        output = by_number.get(number)
        missing = {"code": "missing", "message": "no result"}
        error = _error_of(outputs[index]) if index < len(outputs) else missing
        scenes.append({"scene_number": number, "description": scene["description"],
                       "status": "completed" if output else "failed",
                       "video_url": output["video_url"] if output else None,
                       "error": None if output else error})
    ctx.progress(0.2, f"Joining {len(done)} of {len(board)} scenes")
    with _workdir() as tmp:
        clips = []
        for output in sorted(done, key=lambda o: int(o["scene_number"])):
            path = tmp / f"scene-{output['scene_number']}.mp4"
            get_storage().download(key_of(output["video_url"]), path)
            clips.append(path)
        joined = concat_clips(clips, tmp / "video.mp4")
        info = probe(joined)
        video = store_output(joined, job_id=ctx.job_id, name="video.mp4", content_type="video/mp4")
    return {"storyboard": board, "scenes": scenes, "video_url": video, "duration": info.duration}


# --- persona -------------------------------------------------------------------------------------


@stage_actor(input=PersonaSources, retries=2, time_limit=600.0)
def prepare_persona(data: PersonaSources) -> dict[str, Any]:
    """Resolve the persona's ``video`` and ``photo`` (stored files or URLs) and check them."""
    name = (data.name or "").strip()
    if not name:
        raise InvalidInput("name is required")
    ctx = current_stage()
    ctx.progress(0.1, "Fetching the video and the photo")
    video = stored_input(data.video or "", name="video")
    photo = stored_input(data.photo or "", name="photo")
    with local_copy(video) as path:
        if not check_media(path).has_audio:
            raise InvalidMedia("the video has no audio track to take the voice from")
    with local_copy(photo) as path:
        check_image(path)
    return {"name": name, "video": video, "photo": photo}


@stage_actor(input=PreparedPersona, retries=2, time_limit=600.0)
def persona_audio(data: PreparedPersona) -> dict[str, Any]:
    """Extract the video's audio track (mono WAV); returns ``{"audio_url"}``."""
    ctx = current_stage()
    ctx.progress(0.1, "Extracting the audio track")
    with _workdir() as tmp, local_copy(data.video) as video:
        audio = extract_audio(video, tmp / "voice.wav")
        stored = store_output(audio, job_id=ctx.job_id, name="voice.wav", content_type="audio/wav")
        return {"audio_url": stored}


@stage_actor(input=PreparedPersona, retries=3, time_limit=600.0, max_wait=1800.0)
def persona_voice(data: PreparedPersona) -> dict[str, Any]:
    """Clone (or, locally, profile) the voice from the video's first minutes; returns ``{"voice_id"}``."""
    ctx = current_stage()
    ctx.progress(0.1, "Cloning the voice")
    with _workdir() as tmp, local_copy(data.video) as video:
        sample = extract_audio(video, tmp / "sample.wav", max_seconds=VOICE_SAMPLE_SECONDS)
        return {"voice_id": voice_cloner().clone(sample, data.name or "persona")}


@stage_actor(input=PreparedPersona, retries=3, time_limit=300.0)
def persona_avatar(data: PreparedPersona) -> dict[str, Any]:
    """Make the avatar from the photo (a face crop, or a D-ID image); returns ``{"avatar_id"}``."""
    ctx = current_stage()
    ctx.progress(0.1, "Creating the avatar")
    with local_copy(data.photo) as photo:
        return {"avatar_id": avatar_maker().create(photo, job_id=ctx.job_id)}


@stage_actor(input=PersonaBranches, retries=1, time_limit=60.0)
def join_persona(branches: PersonaBranches) -> dict[str, Any]:
    """Merge the three branches into ``{"audio_url", "voice_id", "avatar_id"}``."""
    merged: dict[str, Any] = {}
    for output in branches.root.values():
        if isinstance(output, dict):
            merged.update(output)
    missing = [k for k in ("audio_url", "voice_id", "avatar_id") if not merged.get(k)]
    if missing:
        raise PermanentError(f"the persona is missing {', '.join(missing)}", code="persona_incomplete")
    return {k: merged[k] for k in ("audio_url", "voice_id", "avatar_id")}


# --- talking_video -------------------------------------------------------------------------------


@stage_actor(input=SpeakTextInput, retries=3, time_limit=600.0)
def speak_text(data: SpeakTextInput) -> dict[str, Any]:
    """Speak ``text`` with the persona's voice; returns ``{"audio_url", "avatar_id"}``."""
    persona = data.persona
    if persona is None or not persona.voice_id or not persona.avatar_id:
        raise InvalidInput("the persona job's result (voice_id, avatar_id) was not provided")
    text = (data.text or "").strip()
    if not text:
        raise InvalidInput("text is required")
    parse_avatar_id(persona.avatar_id)  # fail now, not after the speech is made
    ctx = current_stage()
    ctx.progress(0.1, "Speaking the text")
    with _workdir() as tmp:
        speech = speak(text, tmp, voice_id=persona.voice_id)
        kind = "audio/mpeg" if speech.suffix == ".mp3" else "audio/wav"
        audio = store_output(speech, job_id=ctx.job_id, name=f"speech{speech.suffix}", content_type=kind)
    return {"audio_url": audio, "avatar_id": persona.avatar_id}


@stage_actor(input=SpeechInput, retries=3, time_limit=1200.0, max_wait=3600.0)
def animate_avatar(data: SpeechInput) -> dict[str, Any]:
    """Make the avatar say the speech; returns ``{"audio_url", "video_url"}``."""
    avatar = parse_avatar_id(str(data.avatar_id))
    ctx = current_stage()
    ctx.progress(0.05, "Animating the avatar")
    with _workdir() as tmp, local_copy(data.audio_url) as speech:
        video = talking_video_maker().render(avatar, speech, tmp / "talking.mp4")
        info = probe(video)
        if not (info.has_video and info.has_audio):
            raise InvalidMedia("the talking video came out without picture or sound")
        stored = store_output(video, job_id=ctx.job_id, name="talking.mp4", content_type="video/mp4")
    return {"audio_url": data.audio_url, "video_url": stored}


# --- color_grade and roto ------------------------------------------------------------------------


@stage_actor(input=GradeInput, retries=2, time_limit=1800.0)
def grade_video(data: GradeInput) -> dict[str, Any]:
    """Grade ``video`` with the named ``preset``; returns ``{"video_url", "preset"}``."""
    preset = check_preset(data.preset or "")
    ctx = current_stage()
    video = stored_input(data.video or "", name="video")
    ctx.progress(0.1, f"Grading with the {preset} preset")
    with _workdir() as tmp, local_copy(video) as source:
        check_media(source)
        graded = grade(source, tmp / "graded.mp4", preset)
        stored = store_output(graded, job_id=ctx.job_id, name="graded.mp4", content_type="video/mp4")
        return {"video_url": stored, "preset": preset}


@stage_actor(input=RotoInput, retries=2, time_limit=1800.0, max_wait=3600.0)
def roto_video(data: RotoInput) -> dict[str, Any]:
    """Cut the subject out of ``video``; returns ``{"video_url"}`` (the matte) and ``{"mask_url"}`` (PNG)."""
    ctx = current_stage()
    video = stored_input(data.video or "", name="video")
    ctx.progress(0.05, "Cutting out the subject")
    with _workdir() as tmp, local_copy(video) as source:
        check_media(source)
        matte, mask = roto_provider().matte(
            source, tmp / "matte.mp4", tmp / "mask.png", data.description
        )
        return {
            "video_url": store_output(matte, job_id=ctx.job_id, name="matte.mp4", content_type="video/mp4"),
            "mask_url": store_output(mask, job_id=ctx.job_id, name="mask.png", content_type="image/png"),
        }
