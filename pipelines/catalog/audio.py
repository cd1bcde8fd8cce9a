"""The audio pipelines: lecture notes, subtitles, noise removal and audio clean-up."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from actors.stages.audio import (
    clean_audio,
    make_subtitles,
    merge_notes,
    prepare_audio,
    remove_noise,
    split_audio,
    summarize_chunk,
    transcribe_chunk,
)
from pipelines.catalog.inputs import (
    FILE_REF,
    ChunkSeconds,
    FileRef,
    Glossary,
    Language,
    StrictInput,
    file_field,
)
from pipelines.definition import Pipeline, Step, fan_out, stage

#: The longest transcript ``lecture_notes`` takes instead of audio (characters).
MAX_TRANSCRIPT_CHARS = 200_000


class LectureNotesInput(StrictInput):
    """Input of ``lecture_notes``: the recording (``audio``) or its text (``transcript``)."""

    audio: FileRef | None = Field(None, description=f"The lecture recording: {FILE_REF}. Or give `transcript`.")
    transcript: str | None = Field(None, min_length=1, max_length=MAX_TRANSCRIPT_CHARS,
                                   description="The lecture's text, instead of `audio`: the audio stages then "
                                               "pass it through.")
    language: Language = None
    chunk_seconds: ChunkSeconds = None
    glossary: Glossary = None

    @model_validator(mode="after")
    def _audio_or_transcript(self) -> LectureNotesInput:
        if (self.audio is None) == (self.transcript is None or not self.transcript.strip()):
            raise ValueError("give `audio` (a recording) or `transcript` (its text): one of the two")
        return self


class SubtitlesInput(StrictInput):
    """Input of ``subtitles``."""

    media: FileRef = file_field("Audio or video")
    format: Literal["srt", "vtt"] = Field("srt", description="Subtitle format.")
    language: Language = None
    chunk_seconds: ChunkSeconds = None
    glossary: Glossary = None


class AudioInput(StrictInput):
    """Input of ``noise_removal`` and ``audio_clean``."""

    audio: FileRef = file_field("The recording")


def _transcription(weight: float) -> list[Step]:
    """The steps both transcribing pipelines start with, so they chunk and transcribe alike.

    ``weight`` is the transcription's share of the job's progress; preparing and splitting count 5 each.
    A ``lecture_notes`` job given a ``transcript`` instead of audio runs the same steps: each passes the
    text through at once (prepare keeps it, split cuts it into chunks of sentences, transcribe hands
    them on), so one pipeline serves both inputs.
    """
    return [
        stage(prepare_audio, name="prepare", weight=5),
        stage(split_audio, name="split", weight=5),
        fan_out(transcribe_chunk, name="transcribe", weight=weight, concurrency=4, on_failure="fail"),
    ]


lecture_notes = Pipeline(
    "lecture_notes",
    description="Transcribe a lecture and write notes: title, summary, sections, takeaways, definitions.",
    input_model=LectureNotesInput,
    needs=("transcribe", "summarize"),
    steps=[
        *_transcription(weight=50),
        fan_out(summarize_chunk, name="summarize", weight=30, concurrency=4, on_failure="fail"),
        stage(merge_notes, name="merge", weight=10),
    ],
)

subtitles = Pipeline(
    "subtitles",
    description="Subtitles (SRT or WebVTT) for the speech in an audio or video file.",
    input_model=SubtitlesInput,
    needs=("transcribe",),
    steps=[
        *_transcription(weight=80),
        stage(make_subtitles, name="subtitles", weight=10),
    ],
)

noise_removal = Pipeline(
    "noise_removal",
    description="Remove background noise from a recording.",
    input_model=AudioInput,
    needs=("denoise",),
    steps=[stage(remove_noise, name="denoise", weight=1)],
)

audio_clean = Pipeline(
    "audio_clean",
    description="Remove noise, cut rumble and hiss, and level loudness to -16 LUFS.",
    input_model=AudioInput,
    needs=("denoise",),
    steps=[stage(clean_audio, name="clean", weight=1)],
)
