"""``lecture_notes`` and ``subtitles`` jobs through the engine: no speech is an error that spends no retry,
a transcript takes the place of audio, and the glossary is an input the API describes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from actors.files.keys import new_key
from actors.files.storage import get_storage
from actors.media.audio import SAMPLE_RATE, write_wav
from tests.support.jobs import wait_for_job


def _upload(path: Path) -> str:
    from pipelines.store.db import transaction
    from pipelines.store.models import StoredFile

    key = new_key("uploads", path.name)
    get_storage().put_file(key, path)
    with transaction() as session:
        stored = StoredFile(key=key, filename=path.name, content_type="audio/wav", size=path.stat().st_size)
        session.add(stored)
        session.flush()
        return f"file:{stored.id}"


@pytest.mark.parametrize("pipeline", ["lecture_notes", "subtitles"])
def test_silence_fails_with_no_speech_after_transcription_spending_no_retry(stub_worker, tmp_path, pipeline):
    from pipelines.services.jobs import start_job

    silence = write_wav(tmp_path / "silence.wav", np.zeros(12 * SAMPLE_RATE, dtype=np.int16))
    field = "audio" if pipeline == "lecture_notes" else "media"
    done = wait_for_job(start_job(pipeline=pipeline, input={field: _upload(silence)})["id"], timeout=60)

    assert done["status"] == "failed"
    assert done["error"]["code"] == "no_speech" and "no speech" in done["error"]["message"]
    stages = {s["name"]: s for s in done["stages"]}
    assert stages["transcribe"]["status"] == "completed"
    failed = [s for s in done["stages"] if s["status"] == "failed"]
    assert [s["name"] for s in failed] == [done["error"]["stage"]] and failed[0]["attempts"] == 1


def test_a_transcript_takes_the_place_of_audio_and_the_glossary_spells_it(stub_worker):
    from pipelines.services.jobs import start_job

    text = ("Good morning. Today we look at how a database survives a crash. A right-ahead log is a file where "
            "the database records every change before it applies it. Copying the changed pages to disk is "
            "called a checkpoint. ") * 3 + "To sum up, log first and checkpoint often."
    job = start_job(pipeline="lecture_notes", input={"transcript": text, "glossary": "write-ahead log, checkpoint"})
    done = wait_for_job(job["id"], timeout=60)

    assert done["status"] == "completed", done["error"]
    assert [s["name"] for s in done["stages"]] == ["prepare", "split", "transcribe", "summarize", "merge"]
    result = done["result"]
    assert "right-ahead" not in result["transcript"] and "write-ahead log" in result["transcript"]
    assert {d["term"] for d in result["definitions"]} >= {"Write-ahead log", "Checkpoint"}
    assert result["title"] == "How a Database Survives a Crash"
    assert result["notes_url"].startswith("/api/files/")
