"""Clip rendering helpers: cards, slow-zoom clips, normalizing, joining, audio loudness and frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from actors.errors import InvalidMedia
from actors.media.ffmpeg import probe, run_ffmpeg
from actors.media.video import (
    CLIP_FORMAT,
    ClipFormat,
    concat_clips,
    extract_audio,
    frame_loudness,
    normalize_clip,
    read_frames,
    read_samples,
    render_title_card,
    video_meta,
    write_frames,
    zoom_clip,
)

#: A small clip format keeps the tests fast.
SMALL = ClipFormat(width=320, height=176, fps=12)


def tone(path: Path, seconds: float, frequency: int = 440) -> Path:
    run_ffmpeg(["-f", "lavfi", "-i", f"sine=frequency={frequency}:duration={seconds}", "-ac", "1", str(path)])
    return path


def test_a_title_card_has_the_requested_size_and_is_not_blank():
    card = render_title_card("A lighthouse at dusk " * 30, heading="Scene 1 of 3", size=(320, 176))
    pixels = np.asarray(card)
    assert card.size == (320, 176)
    # The text is drawn: some pixels are near white on the dark gradient.
    assert (pixels.min(axis=2) > 220).sum() > 100


def test_a_zoom_clip_has_the_narration_length_and_both_streams(tmp_path):
    render_title_card("Scene", size=(640, 352)).save(tmp_path / "card.png")
    clip = zoom_clip(tmp_path / "card.png", tmp_path / "clip.mp4", duration=1.5,
                     audio_path=tone(tmp_path / "a.wav", 1.0), fmt=SMALL)
    info = probe(clip)
    assert info.has_video and info.has_audio
    assert (info.width, info.height) == (320, 176)
    assert info.duration == pytest.approx(1.5, abs=0.1)


def test_a_clip_from_elsewhere_is_normalized_with_silent_audio_added(tmp_path):
    # Given an odd-sized clip without audio
    source = tmp_path / "odd.mp4"
    run_ffmpeg(["-f", "lavfi", "-i", "testsrc=size=250x141:rate=30", "-t", "1", "-pix_fmt", "yuv420p",
                "-vf", "scale=250:142", str(source)])
    # When it is normalized
    info = probe(normalize_clip(source, tmp_path / "norm.mp4", fmt=SMALL))
    # Then it has our size and an audio track, and keeps its length
    assert (info.width, info.height) == (320, 176)
    assert info.has_audio
    assert info.duration == pytest.approx(1.0, abs=0.1)


def test_a_narration_longer_than_the_clip_holds_its_last_frame(tmp_path):
    source = tmp_path / "short.mp4"
    run_ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=160x90:rate=24", "-t", "1", "-pix_fmt", "yuv420p", str(source)])
    info = probe(normalize_clip(source, tmp_path / "n.mp4", fmt=SMALL, narration=tone(tmp_path / "a.wav", 2.0)))
    assert info.has_audio and info.duration == pytest.approx(2.5, abs=0.1)  # narration plus a pause
    frames = list(read_frames(tmp_path / "n.mp4"))
    held = np.abs(frames[-1].astype(int) - frames[-6].astype(int)).mean()
    moving = np.abs(frames[0].astype(int) - frames[11].astype(int)).mean()
    assert held < 1.0 < moving  # the last frame is held while the test pattern moved before


def test_clips_are_joined_end_to_end(tmp_path):
    render_title_card("x", size=(640, 352)).save(tmp_path / "card.png")
    first = zoom_clip(tmp_path / "card.png", tmp_path / "1.mp4", duration=1.0, fmt=SMALL)
    second = zoom_clip(tmp_path / "card.png", tmp_path / "2.mp4", duration=1.5,
                       audio_path=tone(tmp_path / "a.wav", 1.5), fmt=SMALL)
    info = probe(concat_clips([first, second], tmp_path / "joined.mp4"))
    assert info.duration == pytest.approx(2.5, abs=0.15)
    assert info.has_audio and info.has_video


def test_joining_nothing_is_refused(tmp_path):
    with pytest.raises(InvalidMedia):
        concat_clips([], tmp_path / "joined.mp4")


def test_the_audio_track_of_a_video_is_extracted_and_can_be_cut_short(tmp_path):
    render_title_card("x", size=(640, 352)).save(tmp_path / "card.png")
    clip = zoom_clip(tmp_path / "card.png", tmp_path / "c.mp4", duration=2.0,
                     audio_path=tone(tmp_path / "a.wav", 2.0), fmt=SMALL)
    full = probe(extract_audio(clip, tmp_path / "full.wav"))
    short = probe(extract_audio(clip, tmp_path / "short.wav", max_seconds=0.5))
    assert full.has_audio and not full.has_video
    assert full.duration == pytest.approx(2.0, abs=0.1)
    assert short.duration == pytest.approx(0.5, abs=0.05)


def test_a_video_without_sound_has_no_audio_to_extract(tmp_path):
    silent = tmp_path / "silent.mp4"
    run_ffmpeg(["-f", "lavfi", "-i", "testsrc=size=160x96:rate=10", "-t", "0.5", "-pix_fmt", "yuv420p", str(silent)])
    with pytest.raises(InvalidMedia):
        extract_audio(silent, tmp_path / "a.wav")


def test_loudness_follows_the_sound_and_is_zero_in_silence(tmp_path):
    # Given half a second of silence, then half a second of tone
    run_ffmpeg(["-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-f", "lavfi", "-i", "sine=frequency=300:duration=0.5",
                "-filter_complex", "[0:a]atrim=0:0.5[s];[s][1:a]concat=n=2:v=0:a=1", "-ar", "16000",
                str(tmp_path / "a.wav")])
    samples = read_samples(tmp_path / "a.wav")
    levels = frame_loudness(samples, 16000, 10)
    # Then the first frames are closed and the last open
    assert len(levels) == 10
    assert levels[:4].max() == 0.0
    assert levels[6:].min() > 0.9


def test_frames_are_encoded_with_sound_and_read_back(tmp_path):
    frames = [np.full((64, 96, 3), value, np.uint8) for value in (0, 128, 255) for _ in range(4)]
    out = write_frames(frames, tmp_path / "f.mp4", size=(96, 64), fps=12, audio_path=tone(tmp_path / "a.wav", 1.0),
                       duration=1.0)
    info = probe(out)
    assert info.has_video and info.has_audio and (info.width, info.height) == (96, 64)
    back = list(read_frames(out))
    assert len(back) == 12
    assert back[0].mean() < 20 and back[-1].mean() > 235
    meta = video_meta(out)
    assert (meta.width, meta.height, round(meta.fps)) == (96, 64, 12)


def test_frame_sizes_that_the_encoder_would_resize_are_refused(tmp_path):
    with pytest.raises(ValueError, match="multiple of 16"):
        write_frames([], tmp_path / "x.mp4", size=(100, 64), fps=10)


def test_the_clip_format_sizes_are_macro_block_aligned():
    assert CLIP_FORMAT.width % 16 == 0 and CLIP_FORMAT.height % 16 == 0
