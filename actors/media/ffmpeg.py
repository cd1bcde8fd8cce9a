"""The ffmpeg binary the project installs from PyPI (imageio-ffmpeg), and how to run it.

No system ffmpeg is needed. There is no ffprobe in that package: :func:`probe` reads the
streams and duration from ``ffmpeg -i`` instead.

User media is on local disk before ffmpeg reads it, so every input ffmpeg opens here is limited
to the ``file`` and ``pipe`` protocols, and to the demuxers of the kinds uploads and fetches are
sniffed as (:data:`MEDIA_DEMUXERS`): no HLS playlist, concat list or image sequence, whose
entries would make ffmpeg open other files (a playlist naming ``/etc/...`` or a URL).
:func:`input_args` spells those options; :func:`run_ffmpeg` adds them before any ``-i`` that
does not already have them.
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
#: Protocols an input may use: the media is a local file (or our own pipe) by the time ffmpeg runs.
PROTOCOLS = "file,pipe"
#: Demuxers an input of user media may be read with: those of the audio and video kinds
#: :mod:`actors.media.sniff` accepts. Playlists (hls), concat lists and image sequences are left out.
MEDIA_DEMUXERS = "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,mp3,ogg,flac,wav,aac,aiff,amr,avi,mpeg,flv"


def input_args(path: Path | str, *, demuxer: str | None = None) -> list[str]:
    """``-i path`` with the protocol whitelist and the media demuxers (or one named ``demuxer``)."""
    formats = ["-f", demuxer] if demuxer else ["-format_whitelist", MEDIA_DEMUXERS]
    return ["-protocol_whitelist", PROTOCOLS, *formats, "-i", str(path)]


def guarded(args: list[str]) -> list[str]:
    """``args`` with :func:`input_args`'s whitelists before each ``-i`` that lacks them.

    An input whose demuxer is named (``-f concat``, ``-f lavfi``) keeps it and gets the protocol
    whitelist only.
    """
    out: list[str] = []
    pending: list[str] = []  # the options given since the previous input
    for index, arg in enumerate(args):
        if arg == "-i" and index + 1 < len(args):
            if "-protocol_whitelist" not in pending:
                out += ["-protocol_whitelist", PROTOCOLS]
            if "-f" not in pending and "-format_whitelist" not in pending:
                out += ["-format_whitelist", MEDIA_DEMUXERS]
            pending = []
        else:
            pending.append(arg)
        out.append(arg)
    return out


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
    command = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *guarded(args)]
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
        [ffmpeg_exe(), "-hide_banner", "-nostdin", *input_args(path)], capture_output=True, timeout=60, check=False
    )
    text = done.stderr.decode("utf-8", "replace")
    if "Invalid data found" in text or "Invalid argument" in text or "Stream #" not in text:
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
