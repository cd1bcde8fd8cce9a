"""The media layer: decoding every accepted format, splitting at silences in bounded memory, bad input."""

from __future__ import annotations

import subprocess
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from actors.errors import InvalidMedia
from actors.media.audio import (
    SAMPLE_RATE,
    check_audio,
    decode_pcm,
    encode_audio,
    export_segment,
    frame_levels,
    is_silent,
    load_segment,
    split_at_silences,
    stream_pcm,
    write_wav,
)
from actors.media.ffmpeg import ffmpeg_exe

#: (burst s, pause s) pattern of the synthetic "speech": pauses of 0.6 s between bursts of 2-9 s.
BURSTS = [3.1, 7.4, 2.2, 8.6, 5.0, 4.3, 6.8, 2.9, 8.1, 3.6, 5.5, 7.7, 2.4, 6.1, 4.8, 8.9, 3.3, 5.9, 7.1, 4.0]
PAUSE = 0.6


def ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args], check=True)


def bursts_with_pauses() -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Noise-modulated tone bursts separated by silent pauses; returns samples and the pauses (s)."""
    rng = np.random.default_rng(7)
    pieces, pauses, at = [], [], 0.0
    for seconds in BURSTS:
        t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
        tone = 0.3 * np.sin(2 * np.pi * 220 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t)) + rng.normal(0, 0.05, t.size)
        pieces.append((tone * 32767).astype(np.int16))
        pieces.append(np.zeros(int(PAUSE * SAMPLE_RATE), dtype=np.int16))
        at += seconds
        pauses.append((at, at + PAUSE))
        at += PAUSE
    return np.concatenate(pieces), pauses


@pytest.fixture(scope="module")
def bursts_wav(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, list[tuple[float, float]]]:
    samples, pauses = bursts_with_pauses()
    path = write_wav(tmp_path_factory.mktemp("media") / "bursts.wav", samples)
    return path, samples, pauses


@pytest.mark.parametrize("extension", ["mp3", "m4a", "wav", "ogg", "webm", "mp4"])
def test_every_accepted_format_decodes_to_mono_16k_pcm(tmp_path: Path, extension: str):
    # Given a 2-second 440 Hz tone in that container (with a video track for mp4)
    path = tmp_path / f"tone.{extension}"
    tone = ["-f", "lavfi", "-i", "sine=frequency=440:duration=2:sample_rate=44100"]
    if extension == "mp4":
        ffmpeg("-f", "lavfi", "-i", "testsrc=size=160x120:rate=10:duration=2", *tone, "-shortest",
               "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", str(path))
    else:
        ffmpeg(*tone, "-ac", "2", str(path))

    # When it is decoded
    samples = decode_pcm(path)

    # Then it is 2 s of mono 16 kHz audio, and the tone's frequency survived
    assert samples.dtype == np.int16
    assert abs(samples.size / SAMPLE_RATE - 2.0) < 0.12
    spectrum = np.abs(np.fft.rfft(samples[4000:20000].astype(float)))
    assert abs(np.argmax(spectrum) * SAMPLE_RATE / 16000 - 440) < 5
    assert check_audio(path).has_audio


def test_splitting_cuts_only_in_pauses_near_the_target_length(bursts_wav):
    path, samples, pauses = bursts_wav

    # When the ~122 s recording is split into chunks of about 30 s
    chunks = list(split_at_silences(path, target_seconds=30))

    # Then the chunks are contiguous, lose no sample, and each cut lies inside a pause
    assert sum(c.samples.size for c in chunks) == samples.size
    assert np.array_equal(np.concatenate([c.samples for c in chunks]), samples)
    for before, after in zip(chunks, chunks[1:], strict=False):
        assert before.end == pytest.approx(after.start)
        assert any(start - 0.02 <= before.end <= end + 0.02 for start, end in pauses), before.end
    for chunk in chunks[:-1]:
        assert 20 <= chunk.duration <= 40
    assert len(chunks) in (4, 5)


def test_audio_without_pauses_is_cut_at_its_quietest_points_within_the_bounds(tmp_path: Path):
    # Given 100 s of uninterrupted noise
    path = tmp_path / "noise.ogg"
    ffmpeg("-f", "lavfi", "-i", "anoisesrc=duration=100:amplitude=0.3:seed=3", "-c:a", "libopus", str(path))

    chunks = list(split_at_silences(path, target_seconds=30))

    assert all(20 <= c.duration <= 40 for c in chunks[:-1])
    assert chunks[-1].end == pytest.approx(100, abs=0.1)
    assert not any(is_silent(c.samples) for c in chunks)


def _split_peak(path: Path) -> tuple[int, int]:
    tracemalloc.start()
    try:
        count = sum(1 for _ in split_at_silences(path, target_seconds=60))
        return count, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_splitting_memory_does_not_grow_with_the_recording_length(tmp_path: Path):
    # Given recordings of 5 and 20 minutes (the longer is 38 MB of 16 kHz PCM once decoded)
    t = np.arange(9 * SAMPLE_RATE) / SAMPLE_RATE
    pattern = (np.sin(2 * np.pi * 300 * t) * (t > 1) * 9000).astype(np.int16)  # 1 s pause, 8 s tone
    paths = {minutes: write_wav(tmp_path / f"long-{minutes}.wav", np.tile(pattern, minutes * 60 // 9))
             for minutes in (5, 20)}

    # When each is split while tracing Python and numpy allocations
    short_count, short_peak = _split_peak(paths[5])
    long_count, long_peak = _split_peak(paths[20])

    # Then every chunk came out, and the peak is the same for both, far below the decoded size
    assert short_count in range(4, 7) and long_count in range(17, 24)
    assert long_peak < short_peak * 1.25 + 1_000_000, (short_peak, long_peak)
    assert long_peak < 20 * 60 * SAMPLE_RATE * 2 / 4


def test_a_pydub_segment_round_trips_through_an_mp3_export(tmp_path: Path, bursts_wav):
    path, samples, _ = bursts_wav
    segment = load_segment(path)[:5000]  # the first 5 s

    exported = export_segment(segment, tmp_path / "first.mp3", bitrate="64k")

    back = decode_pcm(exported)
    assert abs(back.size / SAMPLE_RATE - 5.0) < 0.1
    level = frame_levels(back[: 3 * SAMPLE_RATE]).mean()
    assert level == pytest.approx(frame_levels(samples[: 3 * SAMPLE_RATE]).mean(), abs=1.5)


def test_encoding_applies_filters_and_the_codec_of_the_extension(tmp_path: Path, bursts_wav):
    path, _, _ = bursts_wav
    quiet = encode_audio(path, tmp_path / "quiet.ogg", filters="volume=0.1")
    assert quiet.stat().st_size > 0
    assert frame_levels(decode_pcm(quiet)).max() < frame_levels(decode_pcm(path)).max() - 15


@pytest.mark.parametrize(
    "name, content",
    [("empty.mp3", b""), ("notes.mp3", b"this is not audio at all\n" * 40), ("random.m4a", bytes(range(256)) * 64)],
)
def test_empty_corrupt_or_non_media_files_are_invalid_media(tmp_path: Path, name: str, content: bytes):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InvalidMedia):
        check_audio(path)
    with pytest.raises(InvalidMedia):
        list(stream_pcm(path))


def test_a_video_without_an_audio_track_is_invalid_media(tmp_path: Path):
    path = tmp_path / "silent-film.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=160x120:rate=10:duration=1", "-c:v", "libx264", "-pix_fmt", "yuv420p",
           str(path))
    with pytest.raises(InvalidMedia, match="no audio"):
        check_audio(path)
    with pytest.raises(InvalidMedia):
        list(stream_pcm(path))
