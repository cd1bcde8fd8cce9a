"""The visual pipelines: video generation, persona, talking video, colour grade and roto.

``talking_video`` needs its ``persona_job`` resolved before the first stage: :func:`resolve_persona`
(its ``prepare_input``) passes the persona job's stored result, with ``storage:`` references, as
``input["persona"]`` (see :mod:`actors.stages.visual`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from actors.providers.grade import preset_names
from actors.stages.visual import (
    DEFAULT_MAX_SCENES,
    MAX_SCENES,
    animate_avatar,
    grade_video,
    join_persona,
    join_scenes,
    persona_audio,
    persona_avatar,
    persona_voice,
    plan_scenes,
    prepare_persona,
    render_scene,
    roto_video,
    speak_text,
)
from conveyor.errors import InvalidJobInput
from pipelines.catalog.inputs import FileRef, StrictInput, file_field
from pipelines.definition import JobLookup, Pipeline, fan_out, parallel, stage

MIN_SCRIPT_CHARS = 60
MAX_SCRIPT_CHARS = 20_000
MAX_SPEECH_CHARS = 5_000

Preset = Literal["warm", "cool", "noir", "vivid", "vintage", "teal_orange"]


class VideoGenerationInput(StrictInput):
    """Input of ``video_generation``."""

    script: str = Field(min_length=MIN_SCRIPT_CHARS, max_length=MAX_SCRIPT_CHARS,
                        description="The script; paragraphs become scenes (else sentences, else chunks).")
    max_scenes: int = Field(DEFAULT_MAX_SCENES, ge=1, le=MAX_SCENES, description="The most scenes to make.")
    fail_scenes: list[int] = Field(
        default_factory=list, max_length=MAX_SCENES,
        description="For testing the tolerate policy: scene numbers (from 1) that fail on purpose.",
    )

    @field_validator("script")
    @classmethod
    def _long_enough(cls, script: str) -> str:
        if len(script.strip()) < MIN_SCRIPT_CHARS:
            raise ValueError(f"the script must have at least {MIN_SCRIPT_CHARS} characters besides spaces")
        return script


class PersonaInput(StrictInput):
    """Input of ``persona``."""

    name: str = Field(min_length=1, max_length=100, description="The persona's name.")
    video: FileRef = file_field("A video of the person speaking (the voice comes from it)")
    photo: FileRef = file_field("A photo of the person's face")


class TalkingVideoInput(StrictInput):
    """Input of ``talking_video``."""

    persona_job: str = Field(min_length=1, max_length=64, description="The id of a completed persona job.")
    text: str = Field(min_length=1, max_length=MAX_SPEECH_CHARS, description="What the persona says.")


class ColorGradeInput(StrictInput):
    """Input of ``color_grade``."""

    video: FileRef = file_field("The video")
    preset: Preset = Field(description="The look: " + ", ".join(preset_names()) + ".")


class RotoInput(StrictInput):
    """Input of ``roto``."""

    video: FileRef = file_field("The video")
    description: str | None = Field(
        None, max_length=500,
        description="What to cut out; the current providers find the main subject by themselves.",
    )


video_generation = Pipeline(
    "video_generation",
    description="A video from a script: a storyboard, one clip per scene, joined into one video.",
    input_model=VideoGenerationInput,
    needs=("scene_video", "tts"),
    steps=[
        stage(plan_scenes, name="storyboard", weight=5),
        fan_out(render_scene, name="scenes", weight=80, concurrency=2, on_failure="tolerate"),
        stage(join_scenes, name="join", weight=15),
    ],
)

persona = Pipeline(
    "persona",
    description="A persona from a video and a photo: the voice's audio, a voice id and an avatar id.",
    input_model=PersonaInput,
    needs=("voice_clone", "avatar"),
    steps=[
        stage(prepare_persona, name="prepare", weight=10),
        parallel(stage(persona_audio, name="audio"), stage(persona_voice, name="voice"),
                 stage(persona_avatar, name="avatar"), name="build", weight=85),
        stage(join_persona, name="join", weight=5),
    ],
)

def resolve_persona(lookup: JobLookup, data: dict[str, Any], user_id: str | None) -> dict[str, Any]:
    """Add the persona job's result (``voice_id``, ``avatar_id``, ``audio_url`` as stored) as ``persona``.

    Raises:
      InvalidJobInput: when ``persona_job`` is not a completed persona job of this user.
    """
    job = lookup(data["persona_job"])
    problem = None
    if job is None or job.user_id != user_id or job.pipeline != "persona":
        problem = "no such persona job"
    elif job.status != "completed":
        problem = f"the persona job is {job.status}, not completed"
    elif not isinstance(job.output, dict) or not all(job.output.get(k) for k in ("voice_id", "avatar_id")):
        problem = "the persona job has no voice and avatar"
    if problem is not None or job is None:
        raise InvalidJobInput([{"field": "input.persona_job", "message": problem or "no result"}])
    return {**data, "persona": {k: job.output.get(k) for k in ("voice_id", "avatar_id", "audio_url")}}


talking_video = Pipeline(
    "talking_video",
    description="A persona saying a text: the speech in its voice and a video of its avatar with sound.",
    input_model=TalkingVideoInput,
    needs=("tts", "talking_video"),
    prepare_input=resolve_persona,
    steps=[
        stage(speak_text, name="speak", weight=30),
        stage(animate_avatar, name="animate", weight=70),
    ],
)

color_grade = Pipeline(
    "color_grade",
    description="Colour-grade a video with a named preset.",
    input_model=ColorGradeInput,
    steps=[stage(grade_video, name="grade", weight=1)],
)

roto = Pipeline(
    "roto",
    description="Cut the subject out of a video: a matte video and a mask image.",
    input_model=RotoInput,
    needs=("roto",),
    steps=[stage(roto_video, name="roto", weight=1)],
)
