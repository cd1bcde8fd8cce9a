"""The sample lecture the tests feed in, and measuring the media files they produce (where a file
without a duration is itself a failure)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from actors.media.ffmpeg import ffmpeg_exe, probe

ROOT = Path(__file__).resolve().parents[2]
#: The demo lecture (60.5 s, the Piper voice) and the text it speaks.
SAMPLE = ROOT / "samples" / "lecture.mp3"
SAMPLE_TEXT = (ROOT / "samples" / "lecture.txt").read_text(encoding="utf-8")
#: s into the sample where a sentence ends: after the fifth ("photosynthesis" among them), the seventh
FIVE_SENTENCES, SEVEN_SENTENCES = 23.5, 37.5


def sample_opening(folder: Path, seconds: float) -> Path:
    """The sample's first ``seconds`` as an MP3 in ``folder``: for tests of the path a recording takes,
    where transcribing the whole lecture would only cost time."""
    clip = folder / f"lecture-{seconds:g}s.mp3"
    if not clip.exists():
        subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-y", "-i", str(SAMPLE), "-t", str(seconds),
                        "-c", "copy", str(clip)], check=True)
    return clip


def duration_of(path: Path) -> float:
    """The seconds ``path`` lasts, as ffprobe reports them; fails the test when it reports none."""
    seconds = probe(path).duration
    assert seconds is not None, f"{path.name} should have a duration"
    return seconds
