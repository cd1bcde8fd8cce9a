"""Stage actors of the audio pipelines: ``lecture_notes``, ``subtitles``, ``noise_removal``, ``audio_clean``.

``lecture_notes``: prepare -> split -> transcribe_chunk (one message per chunk) -> summarize_chunk
(one per chunk) -> merge_notes. ``subtitles``: prepare -> split -> transcribe_chunk -> make_subtitles.
Each stage takes the previous stage's JSON output and returns small JSON: audio moves between
stages as ``storage:`` references (chunk WAVs, chunk transcripts with word timings).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from actors.context import current_stage
from actors.errors import InvalidInput, NoSpeech
from actors.files.fetch import stored_input
from actors.files.keys import key_of, new_key, ref
from actors.files.storage import get_storage, job_folder, local_copy, store_output
from actors.media.audio import DEFAULT_CHUNK_SECONDS, check_audio, is_silent, split_at_silences, write_wav
from actors.media.glossary import respell
from actors.media.subtitles import render
from actors.providers import denoise as denoise_provider
from actors.providers import summarize
from actors.providers.transcribe import Transcript, transcribe
from actors.stage import stage_actor
from actors.stage_inputs import (
    AudioFileInput,
    CarriedOptions,
    ChunkInput,
    PrepareAudioInput,
    PreparedAudio,
    TranscribeItem,
)
from conveyor.render import notes_markdown

#: Input options carried from the job input through every stage to the last one.
_CARRIED = ("language", "format", "chunk_seconds", "glossary")
#: Fewer words than this in a whole recording: no speech (silence, noise, or a clip too short for a sentence).
MIN_SPEECH_WORDS = 4
#: Words of a given transcript per chunk of notes (about a minute of speech).
TRANSCRIPT_CHUNK_WORDS = 160


def _options(data: CarriedOptions) -> dict[str, Any]:
    return {k: getattr(data, k) for k in _CARRIED if getattr(data, k) is not None}


_NO_SPEECH = ("no speech was found in the recording (silence, noise only, or too short to hold a sentence); "
              "check that it is the right file and that its sound is not muted")


def _position(item: ChunkInput) -> tuple[int, int]:
    """This fan-out item's 1-based number and the item count."""
    ctx = current_stage()
    index = ctx.item if ctx.item is not None else (item.index if item.index is not None else 0)
    total = ctx.items_total or (item.total if item.total is not None else 1)
    return index + 1, total


def _index(item: ChunkInput, number: int) -> int:
    """The item's own index, else the one its position gives."""
    return item.index if item.index is not None else number - 1


def _is_failed(item: Any) -> bool:
    return isinstance(item, dict) and "error" in item and "index" not in item


# --- shared: prepare and split -------------------------------------------------------------------


@stage_actor(input=PrepareAudioInput, retries=2, time_limit=600.0)
def prepare_audio(data: PrepareAudioInput) -> dict[str, Any]:
    """Resolve the job's audio (``audio`` or ``media``: a stored file or an https URL) and check it.

    Returns ``{"audio": ref, "duration": s, "has_video": bool, **options}``.

    Raises:
      InvalidMedia: for an empty or corrupt file, or one without audio.
    """
    if data.transcript and not data.audio:
        current_stage().progress(1.0, "A transcript was given: no audio to prepare")
        return {"transcript": data.transcript, "duration": None, **_options(data)}
    field = "media" if "media" in data.model_fields_set else "audio"
    source = data.media if field == "media" else data.audio
    if not source:
        raise InvalidInput(f"the input needs {field!r}: an uploaded file or an https:// URL")
    ctx = current_stage()
    ctx.progress(0.1, "Checking the audio")
    reference = stored_input(source, name=field)
    with local_copy(reference) as path:
        info = check_audio(path)
    ctx.progress(1.0, f"Audio of {info.duration or 0:.0f} s ready")
    return {"audio": reference, "duration": info.duration, "has_video": info.has_video, **_options(data)}


@stage_actor(input=PreparedAudio, retries=2, time_limit=3600.0)
def split_audio(data: PreparedAudio) -> list[dict[str, Any]]:
    """Cut the audio at silences into chunks of about ``chunk_seconds`` (60 by default), stored as WAVs.

    Returns one item per chunk: ``{"chunk": ref, "index", "total", "start", "end", "silent", **options}``.
    """
    ctx = current_stage()
    if "transcript" in data.model_fields_set:
        return _split_transcript(data)
    target = float(data.chunk_seconds or DEFAULT_CHUNK_SECONDS)
    expected = max(1, round((data.duration or target) / target))
    items: list[dict[str, Any]] = []
    with local_copy(data.audio or "") as path, tempfile.TemporaryDirectory(prefix="conveyor-") as tmp:
        for chunk in split_at_silences(path, target_seconds=target):
            wav = write_wav(Path(tmp) / f"chunk-{chunk.index:04d}.wav", chunk.samples)
            reference = store_output(wav, job_id=ctx.job_id, name=wav.name, content_type="audio/wav")
            wav.unlink()
            items.append({"chunk": reference, "index": chunk.index, "start": round(chunk.start, 3),
                          "end": round(chunk.end, 3), "silent": is_silent(chunk.samples)})
            ctx.progress(min(0.99, len(items) / max(expected, len(items) + 1)),
                         f"Splitting the audio: {len(items)} chunks so far")
    options = _options(data)
    for item in items:
        item.update(total=len(items), **options)
    ctx.progress(1.0, f"Split into {len(items)} chunks")
    return items


def _split_transcript(data: PreparedAudio) -> list[dict[str, Any]]:
    """A given transcript cut at sentence ends into chunks of about :data:`TRANSCRIPT_CHUNK_WORDS` words."""
    pieces: list[str] = []
    current: list[str] = []
    for sentence in summarize.sentences(data.transcript or ""):
        current.append(sentence)
        if sum(len(s.split()) for s in current) >= TRANSCRIPT_CHUNK_WORDS:
            pieces.append(" ".join(current))
            current = []
    if current:
        pieces.append(" ".join(current))
    options = _options(data)
    items = [{"text": text, "index": n, "total": len(pieces), "start": None, "end": None, "given": True, **options}
             for n, text in enumerate(pieces)]
    current_stage().progress(1.0, f"A transcript was given: {len(items)} chunks of text")
    return items


# --- transcription ------------------------------------------------------------------------------


@stage_actor(input=TranscribeItem, retries=3, time_limit=1200.0)
def transcribe_chunk(item: TranscribeItem) -> dict[str, Any]:
    """Transcribe one chunk; its full transcript (word timings in the whole file's time) goes to storage.

    Returns ``{"index", "total", "start", "end", "text", "language", "transcript": ref, **options}``.
    """
    number, total = _position(item)
    ctx = current_stage()
    if item.given:
        ctx.progress(1.0, f"Chunk {number} of {total} is text already")
        return {"index": _index(item, number), "total": total, "start": None, "end": None,
                "text": respell(item.text, item.glossary), "language": item.language,
                "transcript": None, **{k: v for k, v in _options(item).items() if k != "language"}}
    ctx.progress(0.05, f"Transcribing chunk {number} of {total}")
    if item.silent:
        result = Transcript("", [], [], item.language)
    else:
        with local_copy(item.chunk or "") as path:
            def report(fraction: float) -> None:
                ctx.progress(0.05 + 0.9 * fraction, f"Transcribing chunk {number} of {total}")

            result = transcribe(path, language=item.language, on_progress=report, glossary=item.glossary)
            result = result.shifted(item.start or 0.0)
    key = new_key(job_folder(ctx.job_id), "transcript.json")
    get_storage().put_bytes(key, json.dumps(result.to_dict()).encode(), "application/json")
    ctx.progress(1.0, f"Transcribed chunk {number} of {total}")
    return {"index": _index(item, number), "total": total, "start": item.start,
            "end": item.end, "text": result.text, "language": result.language, "transcript": ref(key),
            **{k: v for k, v in _options(item).items() if k != "language"}}


# --- lecture notes ------------------------------------------------------------------------------


@stage_actor(input=ChunkInput, retries=3, time_limit=600.0)
def summarize_chunk(item: ChunkInput) -> dict[str, Any]:
    """Notes of one transcribed chunk: ``{"index", "total", "text", "notes": {sections, key_points,
    definitions}}``. A chunk whose transcription failed (tolerated) passes through unchanged."""
    if item.failed:
        return item.model_dump(exclude_unset=True)
    number, total = _position(item)
    ctx = current_stage()
    ctx.progress(0.05, f"Generating notes for chunk {number} of {total}")
    notes = summarize.chunk_notes(item.text, part=number, parts=total, glossary=item.glossary)
    ctx.progress(1.0, f"Generated notes for chunk {number} of {total}")
    return {"index": _index(item, number), "total": total, "text": item.text,
            "notes": notes, **_options(item)}


@stage_actor(retries=3, time_limit=600.0)
def merge_notes(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Merge per-chunk notes into the lecture result: ``title``, ``summary``, ``sections``,
    ``key_takeaways``, ``definitions``, ``transcript`` and ``notes_url`` (a Markdown file)."""
    if not isinstance(items, list):
        raise InvalidInput("merge_notes expects the list of chunk notes")
    ctx = current_stage()
    ctx.progress(0.1, "Merging notes")
    done = sorted((i for i in items if not _is_failed(i)), key=lambda i: int(i.get("index", 0)))
    transcript = summarize.join_chunks([i.get("text", "") for i in done])
    if len(transcript.split()) < MIN_SPEECH_WORDS and len(done) == len(items):
        raise NoSpeech(_NO_SPEECH)
    glossary = next((i["glossary"] for i in done if i.get("glossary")), None)
    result = summarize.merge([i.get("notes", {}) for i in done], transcript, glossary=glossary)
    ctx.progress(0.8, "Saving notes")
    with tempfile.TemporaryDirectory(prefix="conveyor-") as tmp:
        path = Path(tmp) / f"lecture-notes-{ctx.job_id[:8]}.md"
        path.write_text(notes_markdown(result), encoding="utf-8")
        result["notes_url"] = store_output(path, job_id=ctx.job_id, name=path.name, content_type="text/markdown")
    ctx.progress(1.0, "Saved notes")
    return result


# --- subtitles ----------------------------------------------------------------------------------


def _load_transcript(reference: str) -> Transcript:
    with get_storage().open(key_of(reference)) as handle:
        return Transcript.from_dict(json.load(handle))


@stage_actor(retries=3, time_limit=600.0)
def make_subtitles(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Join the chunk transcripts into one subtitle file (``format`` ``srt`` or ``vtt``).

    Returns ``{"subtitles_url": ref, "text": transcript, "format"}``.
    """
    if not isinstance(items, list):
        raise InvalidInput("make_subtitles expects the list of chunk transcripts")
    ctx = current_stage()
    done = sorted((i for i in items if not _is_failed(i)), key=lambda i: int(i.get("index", 0)))
    fmt = next((i["format"] for i in done if i.get("format")), "srt")
    if fmt not in ("srt", "vtt"):
        raise InvalidInput(f"format must be srt or vtt, not {fmt!r}")
    ctx.progress(0.1, "Writing subtitles")
    parts = [_load_transcript(i["transcript"]) for i in done]
    whole = Transcript(" ".join(p.text for p in parts if p.text),
                       [s for p in parts for s in p.segments], [w for p in parts for w in p.words],
                       next((p.language for p in parts if p.language), None))
    if whole.word_count < MIN_SPEECH_WORDS and len(done) == len(items):
        raise NoSpeech(_NO_SPEECH)
    with tempfile.TemporaryDirectory(prefix="conveyor-") as tmp:
        path = Path(tmp) / f"subtitles.{fmt}"
        path.write_text(render(whole, fmt), encoding="utf-8")
        content_type = "application/x-subrip" if fmt == "srt" else "text/vtt"
        reference = store_output(path, job_id=ctx.job_id, name=path.name, content_type=content_type)
    ctx.progress(1.0, "Saved subtitles")
    return {"subtitles_url": reference, "text": whole.text, "format": fmt}


# --- noise removal and clean-up -----------------------------------------------------------------


def _rework_audio(data: AudioFileInput, work: Callable[[Path, Path], Path], doing: str, name: str) -> dict[str, Any]:
    """Check the stored ``audio``, run ``work(input, output)`` on it and store the MP3 it makes as ``name``."""
    ctx = current_stage()
    ctx.progress(0.05, "Checking the audio")
    reference = stored_input(data.audio, name="audio")
    with local_copy(reference) as path, tempfile.TemporaryDirectory(prefix="conveyor-") as tmp:
        check_audio(path)
        ctx.progress(0.1, doing)
        out = work(path, Path(tmp) / name)
        ctx.progress(0.95, "Saving the audio")
        return {"audio_url": store_output(out, job_id=ctx.job_id, name=name, content_type="audio/mpeg")}


@stage_actor(input=AudioFileInput, retries=3, time_limit=3600.0)
def remove_noise(data: AudioFileInput) -> dict[str, Any]:
    """Remove background noise from ``audio``; returns ``{"audio_url": ref}`` (MP3)."""
    return _rework_audio(data, denoise_provider.denoise, "Removing noise", "denoised.mp3")


@stage_actor(input=AudioFileInput, retries=3, time_limit=3600.0)
def clean_audio(data: AudioFileInput) -> dict[str, Any]:
    """Denoise, band-limit and loudness-normalise ``audio``; returns ``{"audio_url": ref}`` (MP3)."""
    return _rework_audio(data, denoise_provider.clean, "Removing noise and levelling loudness", "clean.mp3")
