"""Measuring the media files tests produce, where a file without a duration is itself a failure."""

from __future__ import annotations

from pathlib import Path

from actors.media.ffmpeg import probe


def duration_of(path: Path) -> float:
    """The seconds ``path`` lasts, as ffprobe reports them; fails the test when it reports none."""
    seconds = probe(path).duration
    assert seconds is not None, f"{path.name} should have a duration"
    return seconds
