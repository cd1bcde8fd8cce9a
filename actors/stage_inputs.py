"""What each built-in stage receives, as pydantic models that ``@stage_actor(input=...)`` validates.

A stage's payload is the job's input (already checked by its pipeline's input model), the previous
step's output or one fan-out item, so these models check shape and types only: the checks that
give a user a helpful message (a missing file, a short script) stay in the stage bodies. Fields
that a body read with a default keep that default here, and keys no model names are kept
(``extra="allow"``), so what an earlier stage adds still reaches the stage that needs it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, RootModel, model_validator


class StageInput(BaseModel):
    """The base of a stage's input: a JSON object whose other keys are kept as they are."""

    model_config = ConfigDict(extra="allow")


# --- audio ---------------------------------------------------------------------------------------


class CarriedOptions(StageInput):
    """The job's options that every audio stage passes on to the next (see ``_CARRIED``)."""

    language: str | None = None
    format: str | None = None
    chunk_seconds: float | None = None
    glossary: list[str] | None = None


class PrepareAudioInput(CarriedOptions):
    """``prepare_audio``: the job's input, naming the recording (``audio`` or ``media``) or its ``transcript``."""

    audio: str | None = None
    media: str | None = None
    transcript: str | None = None


class PreparedAudio(CarriedOptions):
    """``split_audio``: what ``prepare_audio`` returns, a stored recording or the given transcript."""

    audio: str | None = None
    duration: float | None = None
    transcript: str | None = None

    @model_validator(mode="after")
    def _audio_or_transcript(self) -> PreparedAudio:
        if not self.audio and "transcript" not in self.model_fields_set:
            raise ValueError("neither the prepared audio nor a transcript was given")
        return self


class ChunkInput(CarriedOptions):
    """One fan-out item of the audio pipelines: a chunk, its transcript, or a failed item's ``error``."""

    index: int | None = None
    total: int | None = None
    start: float | None = None
    end: float | None = None
    chunk: str | None = None  #: ``storage:`` reference of the chunk's WAV
    silent: bool = False
    given: bool = False  #: a piece of a given transcript, not of audio
    text: str = ""
    error: Any = None  #: ``{"code", "message"}`` of a tolerated failure of the previous step's item

    @property
    def failed(self) -> bool:
        """True for the stand-in ``{"error": ...}`` of an item whose previous stage failed and was tolerated."""
        return "error" in self.model_fields_set and "index" not in self.model_fields_set


class TranscribeItem(ChunkInput):
    """``transcribe_chunk``: one chunk of the recording (or a piece of a given transcript)."""

    @model_validator(mode="after")
    def _something_to_transcribe(self) -> TranscribeItem:
        if not (self.chunk or self.given or self.silent):
            raise ValueError("the item names no chunk of audio")
        return self


class AudioFileInput(StageInput):
    """``remove_noise`` and ``clean_audio``: the job's input naming one recording."""

    audio: str = ""


# --- visual --------------------------------------------------------------------------------------


class PlanScenesInput(StageInput):
    """``plan_scenes``: the job's input of ``video_generation``."""

    script: str | None = None
    max_scenes: int | None = None
    fail_scenes: list[int] | None = None


class SceneInput(StageInput):
    """``render_scene``: one scene of the storyboard that ``plan_scenes`` returns."""

    scene_number: int | None = None
    scenes_total: int | None = None
    description: str | None = None
    storyboard: str | None = None  #: ``storage:`` reference of the whole storyboard
    fail: bool = False


class PersonaSources(StageInput):
    """``prepare_persona``: the job's input of ``persona``."""

    name: str | None = None
    video: str | None = None
    photo: str | None = None


class PreparedPersona(StageInput):
    """The persona branches: what ``prepare_persona`` returns, stored ``video`` and ``photo``."""

    name: str | None = None
    video: str
    photo: str


class PersonaBranches(RootModel[dict[str, Any]]):
    """``join_persona``: each branch's output, by branch name."""


class ResolvedPersona(StageInput):
    """A persona job's stored result, as ``resolve_persona`` hands it to ``talking_video``."""

    voice_id: str | None = None
    avatar_id: str | None = None
    audio_url: str | None = None


class SpeakTextInput(StageInput):
    """``speak_text``: the job's input of ``talking_video``, with the resolved ``persona``."""

    persona_job: str | None = None
    text: str | None = None
    persona: ResolvedPersona | None = None


class SpeechInput(StageInput):
    """``animate_avatar``: what ``speak_text`` returns."""

    audio_url: str
    avatar_id: str | None = None


class GradeInput(StageInput):
    """``grade_video``: the job's input of ``color_grade``."""

    video: str | None = None
    preset: str | None = None


class RotoInput(StageInput):
    """``roto_video``: the job's input of ``roto``."""

    video: str | None = None
    description: str | None = None
