"""Subtitles (SRT and WebVTT) from a transcript's word or segment timings.

Cues follow common subtitling practice: at most two lines of about 42 characters, at most about
7 seconds on screen, a new cue after a sentence ends or the speaker pauses.
"""

from __future__ import annotations

from dataclasses import dataclass

from actors.providers.transcribe import Segment, Transcript, Word

MAX_LINE_CHARS = 42
MAX_LINES = 2
MAX_CUE_SECONDS = 7.0  #: s
MAX_PAUSE = 1.0  #: s of silence between words that starts a new cue
MIN_CUE_SECONDS = 0.7  #: s; shorter cues are stretched when there is room


@dataclass(frozen=True)
class Cue:
    """One subtitle: its time on screen (s) and its lines."""

    start: float
    end: float
    lines: tuple[str, ...]


def wrap(text: str, width: int = MAX_LINE_CHARS) -> list[str]:
    """Greedy line breaking of ``text`` into lines of at most ``width`` characters (long words stay whole)."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        if current and len(current) + 1 + len(word) > width:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    if current:
        lines.append(current)
    return lines


def _fits(text: str) -> bool:
    return len(wrap(text)) <= MAX_LINES


def cues_from_words(words: list[Word]) -> list[Cue]:
    """Group timed words into cues."""
    cues: list[Cue] = []
    group: list[Word] = []

    def flush() -> None:
        if group:
            cues.append(Cue(group[0].start, group[-1].end, tuple(wrap(" ".join(w.text for w in group)))))
            group.clear()

    for word in words:
        if group:
            text = " ".join(w.text for w in group) + " " + word.text
            if (not _fits(text) or word.end - group[0].start > MAX_CUE_SECONDS
                    or word.start - group[-1].end > MAX_PAUSE):
                flush()
        group.append(word)
        if word.text.rstrip("\"')").endswith((".", "?", "!")):
            flush()
    flush()
    return _tidy(cues)


def _segment_words(segment: Segment) -> list[Word]:
    """Spread a segment's duration over its words in proportion to their length (no word timings)."""
    tokens = segment.text.split()
    total = sum(len(t) + 1 for t in tokens) or 1
    span = max(0.0, segment.end - segment.start)
    words, at = [], segment.start
    for token in tokens:
        length = span * (len(token) + 1) / total
        words.append(Word(at, at + length, token))
        at += length
    return words


def cues_from_segments(segments: list[Segment]) -> list[Cue]:
    """Cues from segment timings only: long segments are cut up with estimated word times."""
    words = [w for s in segments for w in _segment_words(s)]
    return cues_from_words(words)


def _tidy(cues: list[Cue]) -> list[Cue]:
    """Give very short cues a readable minimum time, never overlapping the next one."""
    tidy: list[Cue] = []
    for i, cue in enumerate(cues):
        end = max(cue.end, cue.start + MIN_CUE_SECONDS)
        if i + 1 < len(cues):
            end = min(end, cues[i + 1].start)
        tidy.append(Cue(round(cue.start, 3), round(max(end, cue.end), 3), cue.lines))
    return tidy


def cues_for(transcript: Transcript) -> list[Cue]:
    """The cues of ``transcript``: from its words when it has word timings, else from its segments."""
    if transcript.words:
        return cues_from_words(transcript.words)
    return cues_from_segments(transcript.segments)


def _timestamp(seconds: float, separator: str) -> str:
    millis = int(round(max(0.0, seconds) * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def to_srt(cues: list[Cue]) -> str:
    """SubRip text: numbered cues, ``HH:MM:SS,mmm`` times."""
    blocks = [f"{n}\n{_timestamp(c.start, ',')} --> {_timestamp(c.end, ',')}\n" + "\n".join(c.lines)
              for n, c in enumerate(cues, start=1)]
    return "\n\n".join(blocks) + ("\n" if blocks else "")


def to_vtt(cues: list[Cue]) -> str:
    """WebVTT text: a ``WEBVTT`` header, ``HH:MM:SS.mmm`` times."""
    blocks = [f"{_timestamp(c.start, '.')} --> {_timestamp(c.end, '.')}\n" + "\n".join(c.lines) for c in cues]
    return "WEBVTT\n\n" + "\n\n".join(blocks) + ("\n" if blocks else "")


def render(transcript: Transcript, fmt: str) -> str:
    """``transcript`` as subtitles in ``fmt`` (``"srt"`` or ``"vtt"``)."""
    cues = cues_for(transcript)
    if fmt == "srt":
        return to_srt(cues)
    if fmt == "vtt":
        return to_vtt(cues)
    raise ValueError(f"unknown subtitle format {fmt!r}; use srt or vtt")
