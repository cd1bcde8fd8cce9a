"""Audio providers: choice by configuration, local quality bars, and the cloud ones against emulators."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

from actors.errors import InvalidInput, InvalidModelOutput, PermanentError, classify
from actors.media.audio import SAMPLE_RATE, decode_pcm, frame_levels, write_wav
from actors.media.ffmpeg import ffmpeg_exe
from actors.providers import choose, pick
from actors.providers import denoise as dn
from actors.providers import summarize as sm
from actors.providers import transcribe as tr
from conveyor.config import configure, load_settings
from tests.emulator import Emulator, emulator  # noqa: F401  (emulator is a fixture)
from tests.emulator.elevenlabs import elevenlabs_blueprint
from tests.emulator.openai_api import UPLOAD_LIMIT, openai_blueprint

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "lecture.mp3"
SAMPLE_TEXT = (ROOT / "samples" / "lecture.txt").read_text(encoding="utf-8")


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level Levenshtein distance over the reference length (lower case, punctuation dropped)."""
    ref = re.sub(r"[^a-z0-9' ]+", " ", reference.lower()).split()
    hyp = re.sub(r"[^a-z0-9' ]+", " ", hypothesis.lower()).split()
    row = list(range(len(hyp) + 1))
    for i in range(1, len(ref) + 1):
        diagonal, row[0] = row[0], i
        for j in range(1, len(hyp) + 1):
            above = row[j]
            row[j] = min(row[j] + 1, row[j - 1] + 1, diagonal + (ref[i - 1] != hyp[j - 1]))
            diagonal = above
    return row[len(hyp)] / len(ref)


@pytest.fixture
def configured(tmp_path: Path) -> Iterator[Callable[..., None]]:
    """``configured(VAR=value, ...)`` sets the process settings from the environment plus overrides."""

    def apply(**env: str) -> None:
        base = {k: v for k, v in os.environ.items()
                if not k.startswith("CONVEYOR_PROVIDER_") and not k.endswith(("_API_KEY", "_API_TOKEN"))}
        configure(load_settings({**base, "STORAGE_URL": f"file://{tmp_path / 'files'}", **env}))

    apply()
    yield apply
    configure()


@pytest.fixture(scope="module")
def sample_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo lecture as a 16 kHz mono WAV (the chunk format of the split stage)."""
    return write_wav(tmp_path_factory.mktemp("audio") / "lecture.wav", decode_pcm(SAMPLE))


# --- choosing a provider ----------------------------------------------------------------------------


def test_the_local_provider_serves_unless_a_key_or_an_override_says_otherwise(configured):
    configured()
    assert choose("transcribe", "openai_api_key") == "local"
    configured(OPENAI_API_KEY="sk-test-123456")
    assert choose("transcribe", "openai_api_key") == "openai"
    assert choose("denoise", "elevenlabs_api_key") == "local"
    configured(OPENAI_API_KEY="sk-test-123456", CONVEYOR_PROVIDER_TRANSCRIBE="pocketsphinx")
    assert choose("transcribe", "openai_api_key") == "pocketsphinx"
    configured(REPLICATE_API_TOKEN="r8-token-123456")
    assert choose("roto", "replicate_api_token") == "replicate"
    assert choose("avatar", "did_api_key", cloud="d-id") == "local"


def test_an_unknown_configured_provider_is_refused_with_the_known_names(configured):
    configured(CONVEYOR_PROVIDER_TRANSCRIBE="nonesuch")
    with pytest.raises(InvalidInput, match="local, openai, pocketsphinx"):
        pick("transcribe", {"local": 1, "openai": 2, "pocketsphinx": 3}, "openai_api_key")


# --- local transcription quality -------------------------------------------------------------------


@pytest.mark.slow
def test_local_whisper_transcribes_the_sample_lecture_with_few_word_errors(configured, sample_wav):
    # Given the demo lecture spoken by the Piper voice, and its text
    # When the local Whisper base model transcribes it
    result = tr.PROVIDERS["local"](sample_wav)

    # Then the word error rate is low (measured: 5.2 %) and the word timings are ordered and in range
    assert word_error_rate(SAMPLE_TEXT, result.text) <= 0.12
    assert result.language == "en"
    assert len(result.words) > 100 and len(result.segments) >= 5
    starts = [w.start for w in result.words]
    assert starts == sorted(starts)
    assert result.words[0].start >= 0 and result.words[-1].end <= 61
    assert all(isinstance(w.start, float) for w in result.words)  # JSON-ready, not numpy scalars


@pytest.mark.slow
def test_pocketsphinx_is_a_weaker_but_working_fallback(sample_wav):
    result = tr.PROVIDERS["pocketsphinx"](sample_wav)
    # measured: 28.9 % word errors on the sample
    assert word_error_rate(SAMPLE_TEXT, result.text) <= 0.40
    assert result.words and result.segments
    assert result.words[-1].end <= 61


def test_silence_transcribes_to_an_empty_transcript_without_a_model(tmp_path: Path):
    path = write_wav(tmp_path / "silence.wav", np.zeros(3 * SAMPLE_RATE, dtype=np.int16))
    assert tr.transcribe_whisper(path).text == ""
    assert tr.transcribe_pocketsphinx(path).text == ""


def test_a_transcript_shifts_its_timings_and_round_trips_through_json():
    transcript = tr.Transcript("hi there", [tr.Segment(0.0, 1.0, "hi there")],
                               [tr.Word(0.0, 0.4, "hi"), tr.Word(0.5, 1.0, "there")], "en")
    shifted = transcript.shifted(60.0)
    assert shifted.words[1] == tr.Word(60.5, 61.0, "there")
    assert tr.Transcript.from_dict(shifted.to_dict()) == shifted


# --- local notes -------------------------------------------------------------------------------------


def test_local_notes_are_drawn_from_the_transcript():
    text = SAMPLE_TEXT.replace("\n", " ")
    notes = sm.merge([sm.chunk_notes(text)], text)

    assert notes["title"] == "Ecosystems"
    assert notes["summary"] and notes["sections"] and notes["key_takeaways"]
    for sentence in sm.sentences(notes["summary"]) + notes["key_takeaways"]:
        assert sentence.lower() in text.lower()  # a takeaway drops its cue ("To sum up, ...")
    for section in notes["sections"]:
        assert all(sentence in text for sentence in sm.sentences(section["content"]))
    terms = {d["term"]: d["definition"] for d in notes["definitions"]}
    assert terms["Photosynthesis"].startswith("The process by which plants turn light, water and carbon dioxide")
    assert terms["Decomposers"].startswith("Organisms that break down dead matter")
    assert terms["Primary consumers"] == "Animals that eat plants."
    assert notes["transcript"] == text


def test_definitions_need_a_real_term_and_unpunctuated_speech_still_splits():
    found = sm.find_definitions("This is a test. It is a good day. There are many ways. Energy is important. "
                                "Entropy refers to the disorder of a system.")
    assert found == [{"term": "Entropy", "definition": "The disorder of a system."}]
    assert len(sm.sentences(" ".join(["word"] * 100), max_words=40)) == 3


def test_empty_chunks_make_empty_notes_and_an_empty_lecture_still_has_a_title():
    notes = sm.chunk_notes("   ")
    assert notes == {"sections": [], "key_points": [], "definitions": []}
    assert sm.merge([notes], "")["title"] == "Lecture notes"


# --- local denoise and clean -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def noisy_wav(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """20 s of the lecture at 44.1 kHz with white noise at -35 dBFS; returns it and the clean samples."""
    clean = decode_pcm(SAMPLE, sample_rate=44100)[: 20 * 44100]
    noise = np.random.default_rng(0).normal(0, 600, clean.size)
    noisy = np.clip(clean + noise, -32768, 32767).astype(np.int16)
    return write_wav(tmp_path_factory.mktemp("noisy") / "noisy.wav", noisy, sample_rate=44100), clean


@pytest.mark.parametrize("provider", ["local", "ffmpeg"])
def test_denoising_lowers_the_noise_in_pauses_and_keeps_the_speech(noisy_wav, tmp_path: Path, provider: str):
    path, clean = noisy_wav
    out = dn.PROVIDERS[provider](path, tmp_path / "out.mp3")

    levels_clean = frame_levels(clean, sample_rate=44100)
    pauses, speech = levels_clean < -60, levels_clean > -25
    before = frame_levels(decode_pcm(path, sample_rate=44100), sample_rate=44100)
    after = frame_levels(decode_pcm(out, sample_rate=44100), sample_rate=44100)[: before.size]
    # measured: pauses -34.7 -> -48.5 dB (local), -48.9 dB (ffmpeg); speech within 3.5 dB
    assert after[pauses].mean() < before[pauses].mean() - 10
    assert abs(after[speech].mean() - before[speech].mean()) < 6


def test_cleaning_levels_loudness_to_minus_16_lufs(noisy_wav, tmp_path: Path, configured):
    path, _ = noisy_wav
    quiet = tmp_path / "quiet.wav"
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-y", "-i", str(path), "-af", "volume=0.1", str(quiet)],
                   check=True)
    out = dn.clean(quiet, tmp_path / "clean.mp3")
    report = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostats", "-i", str(out), "-af", "ebur128",
                             "-f", "null", "-"], capture_output=True, text=True, check=True).stderr
    integrated = float(re.findall(r"I:\s+(-?[\d.]+) LUFS", report)[-1])
    assert integrated == pytest.approx(-16, abs=2)


# --- OpenAI against the emulator ----------------------------------------------------------------------


@pytest.fixture
def openai_emu(emulator, configured) -> Emulator:  # noqa: F811
    emu = emulator(openai_blueprint())
    configured(OPENAI_API_KEY="sk-emulated-key", OPENAI_BASE_URL=emu.base_url + "/v1")
    return emu


def test_openai_transcription_sends_whisper_1_verbose_json_and_reads_timings(openai_emu, sample_wav):
    result = tr.transcribe(sample_wav, language="en")

    assert result.text.startswith("Welcome to the lecture.")
    assert result.words[1] == tr.Word(0.4, 0.8, "to")
    assert [s.text for s in result.segments] == ["Welcome to the lecture.", "An atom is the smallest unit of matter."]
    assert result.language == "en"
    (call,) = openai_emu.calls_to("/v1/audio/transcriptions")
    assert call.headers["authorization"] == "Bearer sk-emulated-key"
    assert set(call.form) >= {"model", "response_format", "timestamp_granularities[]", "language"}
    assert call.files["file"] == sample_wav.stat().st_size


def test_openai_uploads_over_25_mb_are_re_encoded_first(openai_emu, tmp_path: Path):
    big = tmp_path / "long.wav"  # 14 minutes of 16 kHz PCM: 27 MB
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-y", "-f", "lavfi", "-i", "sine=frequency=200:duration=840",
                    "-ar", "16000", "-ac", "1", str(big)], check=True)
    assert big.stat().st_size > UPLOAD_LIMIT

    tr.transcribe(big)

    (call,) = openai_emu.calls_to("/v1/audio/transcriptions")
    assert call.fault is None and 0 < call.files["file"] < UPLOAD_LIMIT


@pytest.mark.parametrize(
    "status, headers, code, transient, retry_after",
    [(429, {"Retry-After": "7"}, "rate_limited", True, 7.0), (503, {}, "provider_unavailable", True, None),
     (400, {}, "provider_rejected", False, None), (401, {}, "provider_auth", False, None)],
)
def test_openai_errors_are_classified_for_the_engine(openai_emu, sample_wav, status, headers, code, transient,
                                                     retry_after):
    openai_emu.fail_next("/v1/audio/transcriptions", status, headers=headers)
    with pytest.raises(openai.APIStatusError) as raised:
        tr.transcribe(sample_wav)
    info = classify(raised.value)
    assert (info.code, info.transient, info.retry_after) == (code, transient, retry_after)
    assert "sk-emulated-key" not in info.message
    assert len(openai_emu.calls_to("/v1/audio/transcriptions")) == 1  # the SDK itself does not retry


def test_openai_notes_ask_for_a_strict_json_schema_and_merge_into_the_lecture_shape(openai_emu):
    notes = sm.chunk_notes("Entropy refers to the disorder of a system. It always grows.", part=2, parts=3)
    assert set(notes) == {"sections", "key_points", "definitions"}
    assert notes["sections"][0]["heading"]

    result = sm.merge([notes], "Entropy refers to the disorder of a system. It always grows.")
    assert result["title"] and result["summary"] and result["key_takeaways"] and result["sections"]

    calls = openai_emu.calls_to("/v1/chat/completions")
    assert len(calls) == 2
    fmt = calls[0].json["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    assert "part 2 of 3" in calls[0].json["messages"][1]["content"]


def test_malformed_json_twice_is_invalid_model_output_after_one_retry_that_says_why(emulator, configured):  # noqa: F811
    emu = emulator(openai_blueprint(chat_content="Sure! Here are your notes"))
    configured(OPENAI_API_KEY="sk-emulated-key", OPENAI_BASE_URL=emu.base_url + "/v1")
    with pytest.raises(InvalidModelOutput, match="did not answer with the JSON asked for, twice") as raised:
        sm.chunk_notes("Some lecture text that is long enough.")
    assert raised.value.code == "invalid_model_output" and not raised.value.transient
    first, second = emu.calls_to("/v1/chat/completions")
    assert second.json["messages"][-2] == {"role": "assistant", "content": "Sure! Here are your notes"}
    assert "no JSON object" in second.json["messages"][-1]["content"]


@pytest.mark.parametrize("ignores_response_format", [False, True])
def test_a_self_hosted_model_writes_the_notes_whether_or_not_it_honours_response_format(
        emulator, configured, ignores_response_format):  # noqa: F811
    """OPENAI_BASE_URL at an OpenAI-compatible server with CONVEYOR_NOTES_MODEL, no key needed."""
    emu = emulator(openai_blueprint(ignore_response_format=ignores_response_format))
    configured(OPENAI_BASE_URL=emu.base_url + "/v1", CONVEYOR_NOTES_MODEL="qwen2.5-7b-instruct")
    text = "Entropy refers to the disorder of a system. It always grows."
    notes = sm.chunk_notes(text, glossary=["entropy"])
    result = sm.merge([notes], text)
    assert result["title"] and result["summary"] and result["key_takeaways"] and result["sections"]
    calls = emu.calls_to("/v1/chat/completions")
    assert len(calls) == 2 and {c.json["model"] for c in calls} == {"qwen2.5-7b-instruct"}
    assert calls[0].headers["authorization"] == "Bearer no-key"
    assert '"required": ["sections", "key_points", "definitions"]' in calls[0].json["messages"][1]["content"]
    assert "Spell these terms exactly so: entropy." in calls[0].json["messages"][1]["content"]


def test_a_wrong_shape_is_asked_again_and_the_second_answer_is_used(emulator, configured):  # noqa: F811
    emu = emulator(openai_blueprint(answers=['{"sections": "none"}'], ignore_response_format=True))
    configured(OPENAI_BASE_URL=emu.base_url + "/v1", CONVEYOR_NOTES_MODEL="llama-3.1-8b")
    notes = sm.chunk_notes("Entropy refers to the disorder of a system. It always grows.")
    assert notes["sections"] and notes["key_points"]
    retry = emu.calls_to("/v1/chat/completions")[1].json["messages"]
    assert "does not have the asked shape" in retry[-1]["content"] and "sections" in retry[-1]["content"]


def test_json_is_taken_from_prose_and_code_fences():
    fenced = 'Here you go:\n```json\n{"title": "T", "summary": "S.", "key_takeaways": ["K."]}\n```'
    assert sm.parse_answer(fenced, "lecture_notes") == {"title": "T", "summary": "S.", "key_takeaways": ["K."]}
    bare = 'Notes: {"title": "T", "summary": "S.", "key_takeaways": []} Hope this helps.'
    assert sm.parse_answer(bare, "lecture_notes")["title"] == "T"
    with pytest.raises(ValueError, match="key_takeaways"):
        sm.parse_answer('{"title": "T", "summary": "S."}', "lecture_notes")


def test_the_openai_provider_without_a_key_is_a_permanent_error(configured, sample_wav):
    configured(CONVEYOR_PROVIDER_TRANSCRIBE="openai")
    with pytest.raises(PermanentError, match="OPENAI_API_KEY"):
        tr.transcribe(sample_wav)


# --- ElevenLabs against the emulator ------------------------------------------------------------------


@pytest.fixture
def elevenlabs_emu(emulator, configured) -> Emulator:  # noqa: F811
    emu = emulator(elevenlabs_blueprint())
    configured(ELEVENLABS_API_KEY="xi-emulated-key", ELEVENLABS_BASE_URL=emu.base_url)
    return emu


def test_elevenlabs_isolation_uploads_the_audio_and_saves_the_answer(elevenlabs_emu, noisy_wav, tmp_path: Path):
    path, _ = noisy_wav
    out = dn.denoise(path, tmp_path / "isolated.mp3")

    assert abs(decode_pcm(out).size / SAMPLE_RATE - 20.0) < 0.2
    (call,) = elevenlabs_emu.calls_to("/v1/audio-isolation")
    assert call.headers["xi-api-key"] == "xi-emulated-key"
    assert call.files == {"audio": path.stat().st_size}


@pytest.mark.parametrize(
    "status, headers, code, transient, retry_after",
    [(429, {"Retry-After": "3"}, "rate_limited", True, 3.0), (500, {}, "provider_unavailable", True, None),
     (422, {}, "provider_rejected", False, None)],
)
def test_elevenlabs_errors_are_classified_for_the_engine(elevenlabs_emu, noisy_wav, tmp_path: Path, status,
                                                         headers, code, transient, retry_after):
    elevenlabs_emu.fail_next("/v1/audio-isolation", status, headers=headers)
    with pytest.raises(httpx.HTTPStatusError) as raised:
        dn.denoise(noisy_wav[0], tmp_path / "isolated.mp3")
    info = classify(raised.value)
    assert (info.code, info.transient, info.retry_after) == (code, transient, retry_after)
    assert not (tmp_path / "isolated.mp3").exists()


def test_the_glossary_goes_to_openai_as_its_prompt_and_spells_the_transcript(emulator, configured, sample_wav):  # noqa: F811
    emu = emulator(openai_blueprint(transcript="The right-ahead log is a file. Textrank ranks."))
    configured(OPENAI_API_KEY="sk-emulated-key", OPENAI_BASE_URL=emu.base_url + "/v1")
    result = tr.transcribe(sample_wav, glossary=["write-ahead log", "TextRank"])
    assert result.text == "The write-ahead log is a file. TextRank ranks."
    assert [w.text for w in result.words][-2] == "TextRank"
    (call,) = emu.calls_to("/v1/audio/transcriptions")
    assert "prompt" in call.form  # the value is actors.media.glossary.prompt(...), tested in test_lecture_notes.py
