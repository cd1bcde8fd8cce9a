"""Audio stage actors: lecture notes, subtitles, noise removal and clean-up, alone and through the engine."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actors.context import StageContext, stage_context
from actors.errors import InvalidInput, InvalidMedia
from actors.files.keys import key_of, new_key, ref
from actors.files.storage import get_storage, local_copy
from actors.media.audio import SAMPLE_RATE, decode_pcm
from actors.media.ffmpeg import ffmpeg_exe
from actors.media.subtitles import MAX_CUE_SECONDS, MAX_LINE_CHARS, cues_for, render
from actors.providers.summarize import sentences
from actors.providers.transcribe import Segment, Transcript, Word
from actors.stages import audio as stages
from conveyor.config import configure, load_settings
from tests.support.media import SAMPLE, SEVEN_SENTENCES, sample_opening
from tests.support.stages import Recorder


def run(actor: Any, data: Any, recorder: Recorder, *, item: int | None = None, total: int | None = None) -> Any:
    """Call a stage actor as the engine would: inside a stage context with a reporter."""
    ctx = StageContext(job_id="job-1", stage=actor.actor_name, item=item, items_total=total, reporter=recorder)
    with stage_context(ctx):
        return actor(data)


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "files"
    configure(load_settings({**os.environ, "STORAGE_URL": f"file://{root}"}))
    yield root
    configure()


def stored(path: Path) -> str:
    key = new_key("uploads", path.name)
    get_storage().put_file(key, path)
    return ref(key)


def read_text(reference: str) -> str:
    with local_copy(reference) as path:
        return path.read_text(encoding="utf-8")


# --- lecture notes ------------------------------------------------------------------------------


@pytest.mark.slow
def test_lecture_notes_stages_turn_the_sample_into_notes_drawn_from_its_transcript(storage, tmp_path: Path):
    rec = Recorder()
    recording = sample_opening(tmp_path, SEVEN_SENTENCES)
    prepared = run(stages.prepare_audio, {"audio": stored(recording), "chunk_seconds": 13}, rec)
    assert prepared["duration"] == pytest.approx(SEVEN_SENTENCES, abs=0.5)

    items = run(stages.split_audio, prepared, rec)
    assert len(items) == 3 and [i["index"] for i in items] == [0, 1, 2]
    assert all(i["total"] == 3 and i["chunk_seconds"] == 13 for i in items)

    transcribed = [run(stages.transcribe_chunk, i, rec, item=n, total=3) for n, i in enumerate(items)]
    assert "Transcribing chunk 2 of 3" in rec.messages
    assert transcribed[1]["start"] == items[1]["start"] and transcribed[1]["text"]
    chunk_words = json.loads(read_text(transcribed[2]["transcript"]))["words"]
    assert chunk_words[0]["start"] >= items[2]["start"]  # timings are in the whole file's time

    notes = [run(stages.summarize_chunk, t, rec, item=n, total=3) for n, t in enumerate(transcribed)]
    assert "Generating notes for chunk 3 of 3" in rec.messages

    result = run(stages.merge_notes, notes, rec)
    assert "Saving notes" in rec.messages
    transcript = result["transcript"]
    assert "photosynthesis" in transcript.lower() and "food chain" in transcript.lower()
    assert result["title"] and result["summary"]
    assert len(result["sections"]) >= 1 and len(result["key_takeaways"]) >= 1
    for sentence in sentences(result["summary"]) + result["key_takeaways"]:
        assert sentence.lower() in transcript.lower()  # a takeaway drops its cue ("To sum up, ...")
    for section in result["sections"]:
        assert section["heading"] and all(s in transcript for s in sentences(section["content"]))
    assert {"Ecosystem", "Photosynthesis"} <= {d["term"] for d in result["definitions"]}
    assert not any(s[0].islower() for s in sentences(transcript))  # mended where Whisper cut a sentence
    markdown = read_text(result["notes_url"])
    assert markdown.startswith(f"# {result['title']}\n") and "## Key takeaways" in markdown


def test_a_tolerated_failed_chunk_passes_through_and_is_left_out_of_the_notes(storage):
    rec = Recorder()
    failed = {"error": {"code": "provider_unavailable", "message": "down"}}
    assert run(stages.summarize_chunk, failed, rec, item=1, total=2) == failed

    good = run(stages.summarize_chunk, {"index": 0, "total": 2, "text": "An atom is the smallest unit of an "
                                        "element. Atoms bond into molecules."}, rec, item=0, total=2)
    result = run(stages.merge_notes, [good, failed], rec)
    assert result["transcript"].startswith("An atom is the smallest unit")
    assert result["definitions"][0]["term"] == "Atom"


def test_prepare_refuses_corrupt_audio_and_a_missing_field(storage, tmp_path: Path):
    bad = tmp_path / "lecture.mp3"
    bad.write_bytes(b"ID3" + b"\x00" * 50 + b"definitely not mpeg frames" * 20)
    with pytest.raises(InvalidMedia):
        run(stages.prepare_audio, {"audio": stored(bad)}, Recorder())
    with pytest.raises(InvalidInput):
        run(stages.prepare_audio, {"language": "en"}, Recorder())
    with pytest.raises(InvalidInput):
        run(stages.prepare_audio, {"audio": "/etc/passwd"}, Recorder())


def test_silent_chunks_are_not_sent_to_the_transcriber(storage, tmp_path: Path):
    silence = tmp_path / "silence.wav"
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-y", "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono",
                    "-t", "5", str(silence)], check=True)
    items = run(stages.split_audio, run(stages.prepare_audio, {"audio": stored(silence)}, Recorder()), Recorder())
    assert [i["silent"] for i in items] == [True]
    out = run(stages.transcribe_chunk, items[0], Recorder(), item=0, total=1)
    assert out["text"] == ""


# --- subtitles ----------------------------------------------------------------------------------


def _timed_words(text: str, per_word: float = 0.35) -> list[Word]:
    return [Word(round(i * per_word, 3), round((i + 1) * per_word - 0.05, 3), w) for i, w in enumerate(text.split())]


def test_cues_keep_two_short_lines_at_most_seven_seconds_and_break_at_sentences():
    text = ("Subtitles should be easy to read. " * 3) + " ".join(["word"] * 60) + ". The end."
    cues = cues_for(Transcript(text, [], _timed_words(text)))

    assert all(len(c.lines) <= 2 and all(len(line) <= MAX_LINE_CHARS for line in c.lines) for c in cues)
    assert all(c.end - c.start <= MAX_CUE_SECONDS + 0.01 for c in cues)
    assert [" ".join(c.lines) for c in cues[:3]] == ["Subtitles should be easy to read."] * 3
    assert " ".join(" ".join(c.lines) for c in cues).split() == text.split()  # nothing lost or reordered
    assert all(a.end <= b.start for a, b in zip(cues, cues[1:], strict=False))


def test_srt_and_vtt_render_the_standard_layouts():
    transcript = Transcript("Hello there. General Kenobi.", [], [
        Word(0.0, 0.4, "Hello"), Word(0.5, 1.0, "there."), Word(3661.25, 3662.0, "General"),
        Word(3662.1, 3662.9, "Kenobi.")])
    assert render(transcript, "srt") == ("1\n00:00:00,000 --> 00:00:01,000\nHello there.\n\n"
                                         "2\n01:01:01,250 --> 01:01:02,900\nGeneral Kenobi.\n")
    assert render(transcript, "vtt") == ("WEBVTT\n\n00:00:00.000 --> 00:00:01.000\nHello there.\n\n"
                                         "01:01:01.250 --> 01:01:02.900\nGeneral Kenobi.\n")


def test_segments_without_word_timings_are_cut_into_readable_cues():
    long = " ".join(["segment"] * 40) + "."
    cues = cues_for(Transcript(long, [Segment(10.0, 30.0, long)], []))
    assert len(cues) >= 3
    assert cues[0].start == 10.0 and cues[-1].end == pytest.approx(30.0)
    assert all(c.end - c.start <= MAX_CUE_SECONDS + 0.01 for c in cues)


def test_make_subtitles_joins_the_stored_chunk_transcripts_in_order(storage):
    def chunk(index: int, words: list[Word]) -> dict[str, Any]:
        key = new_key("jobs/job-1", "transcript.json")
        text = " ".join(w.text for w in words)
        get_storage().put_bytes(key, json.dumps(Transcript(text, [], words, "en").to_dict()).encode())
        return {"index": index, "total": 2, "text": text, "transcript": ref(key), "format": "vtt"}

    second = chunk(1, [Word(61.0, 61.5, "Second"), Word(61.6, 62.0, "part.")])
    first = chunk(0, [Word(1.0, 1.5, "First"), Word(1.6, 2.0, "part.")])
    result = run(stages.make_subtitles, [second, first], Recorder())

    assert result["format"] == "vtt" and result["text"] == "First part. Second part."
    assert key_of(result["subtitles_url"]).endswith(".vtt")
    body = read_text(result["subtitles_url"])
    assert body.startswith("WEBVTT\n") and body.index("First part.") < body.index("00:01:01.000 --> 00:01:02.000")


@pytest.mark.slow
def test_subtitles_of_a_video_time_the_spoken_words(storage, tmp_path: Path):
    video = tmp_path / "talk.mp4"
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-y", "-f", "lavfi", "-i", "color=c=navy:s=160x120:r=5",
                    "-i", str(SAMPLE), "-t", "12", "-shortest", "-c:v", "libx264", "-pix_fmt", "yuv420p",
                    "-c:a", "aac", str(video)], check=True)
    rec = Recorder()
    prepared = run(stages.prepare_audio, {"media": stored(video), "format": "srt"}, rec)
    assert prepared["has_video"]
    items = run(stages.split_audio, prepared, rec)
    result = run(stages.make_subtitles, [run(stages.transcribe_chunk, i, rec) for i in items], rec)

    srt = read_text(result["subtitles_url"])
    assert srt.startswith("1\n00:00:00,")
    assert "ecosystem" in result["text"].lower()
    times = re.findall(r"(\d\d):(\d\d):(\d\d),(\d{3}) --> (\d\d):(\d\d):(\d\d),(\d{3})", srt)
    ends = [int(t[5]) * 60 + int(t[6]) + int(t[7]) / 1000 for t in times]
    assert len(times) >= 3 and max(ends) <= 12.5


# --- noise removal and clean-up -----------------------------------------------------------------


@pytest.mark.parametrize("actor", [stages.remove_noise, stages.clean_audio])
def test_noise_removal_and_clean_up_store_an_mp3_of_the_same_length(storage, tmp_path: Path, actor):
    clip = tmp_path / "clip.m4a"
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-y", "-i", str(SAMPLE), "-t", "8", "-c:a", "aac",
                    str(clip)], check=True)
    rec = Recorder()
    result = run(actor, {"audio": stored(clip)}, rec)

    assert set(result) == {"audio_url"} and key_of(result["audio_url"]).endswith(".mp3")
    with local_copy(result["audio_url"]) as path:
        assert abs(decode_pcm(path).size / SAMPLE_RATE - 8.0) < 0.2
    assert rec.fractions == sorted(rec.fractions) and rec.messages[0] == "Checking the audio"


# --- through the engine -------------------------------------------------------------------------


@pytest.mark.slow
def test_a_lecture_notes_job_completes_through_the_engine_with_download_links(stub_worker, tmp_path: Path):
    from pipelines.services.jobs import start_job
    from pipelines.store.db import transaction
    from pipelines.store.models import StoredFile
    from tests.support.jobs import wait_for_job

    recording = sample_opening(tmp_path, SEVEN_SENTENCES)  # the path is under test here, the words elsewhere
    key = new_key("uploads", "lecture.mp3")
    get_storage().put_file(key, recording)
    with transaction() as session:
        upload = StoredFile(key=key, filename="lecture.mp3", content_type="audio/mpeg", size=recording.stat().st_size)
        session.add(upload)
        session.flush()
        file_id = upload.id

    job = start_job(pipeline="lecture_notes", input={"audio": f"file:{file_id}", "chunk_seconds": 20})
    done = wait_for_job(job["id"], timeout=240)

    assert done["status"] == "completed", done["error"]
    assert [s["name"] for s in done["stages"]] == ["prepare", "split", "transcribe", "summarize", "merge"]
    assert done["stages"][2]["items"]["total"] == 2
    result = done["result"]
    assert result["title"] and result["summary"] and result["sections"] and result["key_takeaways"]
    assert not str(result["notes_url"]).startswith("storage:")
