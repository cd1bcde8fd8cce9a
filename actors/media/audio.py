"""Audio helpers: decode any media to mono 16 kHz PCM with the project's ffmpeg, and split at silences.

Decoding streams raw PCM (``-f s16le -ac 1 -ar 16000 pipe:1``) in blocks, so a two-hour lecture
is never held whole in memory: :func:`split_at_silences` keeps at most one chunk (plus one block)
of samples. pydub's :class:`AudioSegment` is built from that PCM for small segment work; its
``converter`` is set to the project's ffmpeg for exports (there is no ffprobe).
"""

from __future__ import annotations

import subprocess
import tempfile
import warnings
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

with warnings.catch_warnings():  # pydub warns at import that no system ffmpeg is on PATH (we set our own)
    warnings.simplefilter("ignore", RuntimeWarning)
    warnings.simplefilter("ignore", DeprecationWarning)  # and that audioop leaves Python 3.13
    from pydub import AudioSegment

from actors.errors import InvalidMedia, MediaTooLarge, redact
from actors.media.caps import over_caps
from actors.media.ffmpeg import MediaInfo, ffmpeg_exe, input_args, probe, run_ffmpeg

SAMPLE_RATE = 16000  #: Hz of the decoded PCM
FRAME_SECONDS = 0.02  #: s per RMS frame of the silence detector
BLOCK_SECONDS = 10.0  #: s of PCM read from ffmpeg at a time
DEFAULT_CHUNK_SECONDS = 60.0  #: s, target length of a chunk
SILENCE_DB = -40.0  #: dBFS; frames quieter than this count as silence
SILENCE_WINDOW = 0.3  #: s; a cut needs this much quiet around it

AudioSegment.converter = ffmpeg_exe()


def check_audio(path: Path) -> MediaInfo:
    """Probe ``path`` and make sure it holds a non-empty audio track.

    Raises:
      InvalidMedia: for an empty, corrupt or silent-less (no audio stream) file.
      MediaTooLarge: for media over the duration or frame-size cap (:mod:`actors.media.caps`).
    """
    info = probe(path)
    if not info.has_audio:
        raise InvalidMedia("the file has no audio track")
    reason = over_caps(info.duration, info.width, info.height)
    if reason:  # before any decoding or fan-out: a long file would become hundreds of chunks
        raise MediaTooLarge(reason)
    if info.duration is not None and info.duration <= 0:
        raise InvalidMedia("the audio is empty")
    return info


def _decode_command(path: Path, sample_rate: int) -> list[str]:
    return [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", *input_args(path), "-vn", "-sn",
            "-f", "s16le", "-acodec", "pcm_s16le", "-ac", "1", "-ar", str(sample_rate), "pipe:1"]


def stream_pcm(path: Path, *, sample_rate: int = SAMPLE_RATE,
               block_seconds: float = BLOCK_SECONDS) -> Iterator[np.ndarray]:
    """Decode ``path`` to mono 16-bit PCM, yielding int16 arrays of about ``block_seconds`` each.

    Raises:
      InvalidMedia: when ffmpeg cannot decode the file or it holds no audio samples.
    """
    if not path.is_file() or path.stat().st_size == 0:
        raise InvalidMedia("the media file is empty")
    block_bytes = int(block_seconds * sample_rate) * 2
    with tempfile.TemporaryFile() as errors:  # a file, not a pipe: a chatty ffmpeg cannot block on stderr
        process = subprocess.Popen(_decode_command(path, sample_rate), stdout=subprocess.PIPE, stderr=errors)
        assert process.stdout is not None
        total = 0
        leftover = b""
        try:
            while True:
                data = process.stdout.read(block_bytes)
                if not data:
                    break
                data = leftover + data
                usable = len(data) - len(data) % 2
                leftover = data[usable:]
                if usable:
                    total += usable
                    yield np.frombuffer(data[:usable], dtype=np.int16)
        finally:
            process.stdout.close()
            if process.poll() is None:
                process.kill()
            returncode = process.wait()
        if returncode != 0 and returncode != -9:
            errors.seek(0)
            tail = errors.read().decode("utf-8", "replace").strip().splitlines()[-2:]
            raise InvalidMedia("could not decode the audio: " + redact(" ".join(tail))[:300])
        if total == 0:
            raise InvalidMedia("the file holds no audio samples")


def decode_pcm(path: Path, *, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The whole of ``path`` as mono int16 samples (for clips; use :func:`stream_pcm` for long media)."""
    blocks = list(stream_pcm(path, sample_rate=sample_rate))
    return np.concatenate(blocks)


def load_segment(path: Path, *, sample_rate: int = SAMPLE_RATE) -> AudioSegment:
    """``path`` as a mono 16-bit pydub segment at ``sample_rate`` (decoded by ffmpeg; any format)."""
    samples = decode_pcm(path, sample_rate=sample_rate)
    return AudioSegment(data=samples.tobytes(), sample_width=2, frame_rate=sample_rate, channels=1)


def export_segment(segment: AudioSegment, path: Path, *, bitrate: str | None = None) -> Path:
    """Write ``segment`` to ``path`` in the format its extension names (wav, mp3, ogg, ...)."""
    fmt = path.suffix.lstrip(".").lower() or "wav"
    segment.export(str(path), format=fmt, bitrate=bitrate)
    return path


def write_wav(path: Path, samples: np.ndarray, *, sample_rate: int = SAMPLE_RATE) -> Path:
    """Write mono int16 ``samples`` as a WAV file."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(np.ascontiguousarray(samples, dtype=np.int16).tobytes())
    return path


def encode_audio(source: Path, target: Path, *, bitrate: str = "64k", sample_rate: int | None = None,
                 filters: str | None = None, mono: bool = True) -> Path:
    """Re-encode ``source`` into ``target`` (codec from its extension), optionally through ``filters``.

    Raises:
      InvalidMedia: when ffmpeg fails.
    """
    args = ["-i", str(source), "-vn"]
    if filters:
        args += ["-af", filters]
    if mono:
        args += ["-ac", "1"]
    if sample_rate:
        args += ["-ar", str(sample_rate)]
    codec = {".mp3": ["-c:a", "libmp3lame"], ".ogg": ["-c:a", "libopus"], ".opus": ["-c:a", "libopus"],
             ".m4a": ["-c:a", "aac"], ".wav": ["-c:a", "pcm_s16le"], ".flac": ["-c:a", "flac"]}
    args += codec.get(target.suffix.lower(), [])
    if target.suffix.lower() not in (".wav", ".flac"):
        args += ["-b:a", bitrate]
    run_ffmpeg([*args, str(target)])
    return target


def frame_levels(samples: np.ndarray, *, sample_rate: int = SAMPLE_RATE,
                 frame_seconds: float = FRAME_SECONDS) -> np.ndarray:
    """RMS level in dBFS of each whole frame of ``samples`` (a trailing partial frame is dropped)."""
    frame = int(frame_seconds * sample_rate)
    count = len(samples) // frame
    levels = np.empty(count)
    step = 500  # frames per slice: float temporaries stay small whatever the input's length
    for first in range(0, count, step):
        last = min(count, first + step)
        frames = samples[first * frame : last * frame].reshape(last - first, frame).astype(np.float32)
        power = np.einsum("ij,ij->i", frames, frames) / (frame * 32768.0 * 32768.0)
        levels[first:last] = 10.0 * np.log10(np.maximum(power, 1e-12))
    return levels


@dataclass(frozen=True)
class Chunk:
    """A piece of the decoded audio: its place in the whole (s) and its samples."""

    index: int
    start: float  #: s
    end: float  #: s
    samples: np.ndarray

    @property
    def duration(self) -> float:
        return self.end - self.start


def _best_cut(levels: np.ndarray, *, lo: int, hi: int, target: int, frames_per_second: float,
              silence_db: float, window: int) -> int:
    """The frame index in [lo, hi) where to cut: the middle of the quiet run nearest ``target``.

    A frame is quiet when every frame within ``window`` around it is below the threshold: ``silence_db``,
    raised to 6 dB above the recording's noise floor (5th percentile) for noisy recordings.
    Without any quiet run, the quietest spot, pulled towards the target by 1 dB per 5 s.
    """
    threshold = max(silence_db, float(np.percentile(levels, 5)) + 6.0)
    half = window // 2
    padded = np.pad(levels, (half, window - half - 1), mode="edge")
    loudest = np.lib.stride_tricks.sliding_window_view(padded, window).max(axis=1)
    quiet = np.flatnonzero(loudest[lo:hi] < threshold) + lo
    if quiet.size:
        breaks = np.flatnonzero(np.diff(quiet) > 1)
        starts = np.concatenate([[quiet[0]], quiet[breaks + 1]])
        ends = np.concatenate([quiet[breaks], [quiet[-1]]])
        inside = np.flatnonzero((starts <= target) & (target <= ends))
        if inside.size:
            return target
        middles = (starts + ends) // 2
        return int(middles[np.argmin(np.abs(middles - target))])
    distance = np.abs(np.arange(lo, hi) - target) / frames_per_second
    return int(np.argmin(loudest[lo:hi] + distance / 5.0) + lo)


def split_at_silences(
    path: Path,
    *,
    target_seconds: float = DEFAULT_CHUNK_SECONDS,
    min_seconds: float | None = None,
    max_seconds: float | None = None,
    silence_db: float = SILENCE_DB,
    sample_rate: int = SAMPLE_RATE,
    block_seconds: float = BLOCK_SECONDS,
) -> Iterator[Chunk]:
    """Stream ``path`` and yield chunks of about ``target_seconds``, each cut in a silence.

    A cut falls between ``min_seconds`` (default 2/3 of the target) and ``max_seconds`` (default 4/3),
    at the silence nearest the target; where there is none, at the quietest spot. Memory holds at
    most ``max_seconds + block_seconds`` of samples, whatever the file's length.

    Raises:
      InvalidMedia: when the file cannot be decoded or holds no audio.
    """
    min_seconds = target_seconds * 2 / 3 if min_seconds is None else min_seconds
    max_seconds = target_seconds * 4 / 3 if max_seconds is None else max_seconds
    if not 0 < min_seconds <= target_seconds <= max_seconds:
        raise ValueError("need 0 < min_seconds <= target_seconds <= max_seconds")
    frame = int(FRAME_SECONDS * sample_rate)
    frames_per_second = sample_rate / frame
    max_samples = int(max_seconds * sample_rate) // frame * frame
    window = max(1, int(SILENCE_WINDOW * frames_per_second))

    buffer = np.zeros(0, dtype=np.int16)
    offset = 0  # samples already emitted
    index = 0
    for block in stream_pcm(path, sample_rate=sample_rate, block_seconds=block_seconds):
        buffer = np.concatenate([buffer, block]) if buffer.size else block
        while buffer.size >= max_samples:
            levels = frame_levels(buffer[:max_samples], sample_rate=sample_rate)
            cut = _best_cut(levels, lo=int(min_seconds * frames_per_second), hi=len(levels),
                            target=int(target_seconds * frames_per_second),
                            frames_per_second=frames_per_second, silence_db=silence_db, window=window)
            cut_samples = max(frame, cut * frame)
            piece = buffer[:cut_samples].copy()
            buffer = buffer[cut_samples:].copy()  # copy, so the emitted piece does not pin the old buffer
            yield Chunk(index, offset / sample_rate, (offset + piece.size) / sample_rate, piece)
            offset += piece.size
            index += 1
    if buffer.size:
        yield Chunk(index, offset / sample_rate, (offset + buffer.size) / sample_rate, buffer)


def is_silent(samples: np.ndarray, *, silence_db: float = SILENCE_DB) -> bool:
    """True when no 20 ms frame of ``samples`` rises above ``silence_db``."""
    levels = frame_levels(samples)
    return levels.size == 0 or float(levels.max()) < silence_db
