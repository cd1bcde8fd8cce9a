"""The ffmpeg binary the project installs from PyPI (imageio-ffmpeg), and how to run it.

No system ffmpeg is needed. There is no ffprobe in that package: :func:`probe` reads the
streams and duration from ``ffmpeg -i`` instead.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from actors.errors import InvalidMedia, redact

#: s; the longest a single ffmpeg command may run before it is stopped.
FFMPEG_TIMEOUT = 3600.0


@cache
def ffmpeg_exe() -> str:
    """The path of the ffmpeg executable shipped by imageio-ffmpeg."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def run_ffmpeg(args: list[str], *, timeout: float = FFMPEG_TIMEOUT, input_bytes: bytes | None = None) -> bytes:
    """Run ffmpeg with ``args`` (no ``ffmpeg`` itself); returns stdout.

    Raises:
      InvalidMedia: when ffmpeg fails, with the tail of what it said.
    """
    command = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args]
    try:
        done = subprocess.run(command, input=input_bytes, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise InvalidMedia("ffmpeg took too long on this media") from None
    if done.returncode != 0:
        tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        raise InvalidMedia("could not process the media: " + redact(" ".join(tail))[:300])
    return done.stdout


@dataclass(frozen=True)
class MediaInfo:
    """What ``ffmpeg -i`` says of a file."""

    duration: float | None  #: s
    has_audio: bool
    has_video: bool
    width: int | None = None
    height: int | None = None


_DURATION = re.compile(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)")
_VIDEO = re.compile(r"Stream #\S+.*?: Video: .*?(\d{2,5})x(\d{2,5})")


def probe(path: Path) -> MediaInfo:
    """Read a media file's duration and streams.

    Raises:
      InvalidMedia: when the file is empty or ffmpeg cannot read it.
    """
    if not path.is_file() or path.stat().st_size == 0:
        raise InvalidMedia("the media file is empty")
    done = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)], capture_output=True, timeout=60, check=False
    )
    text = done.stderr.decode("utf-8", "replace")
    if "Invalid data found" in text or ("Stream #" not in text):
        raise InvalidMedia("the file is not a media file ffmpeg can read")
    duration = None
    match = _DURATION.search(text)
    if match:
        hours, minutes, seconds = match.groups()
        duration = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    video = _VIDEO.search(text)
    return MediaInfo(
        duration=duration,
        has_audio=": Audio:" in text,
        has_video=video is not None,
        width=int(video.group(1)) if video else None,
        height=int(video.group(2)) if video else None,
    )
