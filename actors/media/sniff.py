"""What a media file is, read from its first bytes: the one check of uploads and of fetched files.

The name, the extension and the Content-Type a client or a server sent are not trusted; a file
is accepted only when its content starts like audio, video or an image. Playlists (HLS
``#EXTM3U``), ffmpeg concat lists, HTML and any other text start like none of them, so they
are refused before ffmpeg could follow the paths or URLs they name.
"""

from __future__ import annotations

import filetype

#: bytes read to sniff a file's kind.
SNIFF_BYTES = 8192

#: Sniffed kinds that are accepted: MIME type as reported by the sniffer -> (MIME type kept, extension).
ACCEPTED: dict[str, tuple[str, str]] = {
    "audio/mpeg": ("audio/mpeg", "mp3"),
    "audio/mp4": ("audio/mp4", "m4a"),
    "audio/ogg": ("audio/ogg", "ogg"),
    "audio/x-flac": ("audio/flac", "flac"),
    "audio/x-wav": ("audio/wav", "wav"),
    "audio/aac": ("audio/aac", "aac"),
    "audio/x-aiff": ("audio/aiff", "aiff"),
    "audio/amr": ("audio/amr", "amr"),
    "video/mp4": ("video/mp4", "mp4"),
    "video/x-m4v": ("video/mp4", "m4v"),
    "video/quicktime": ("video/quicktime", "mov"),
    "video/x-matroska": ("video/x-matroska", "mkv"),
    "video/webm": ("video/webm", "webm"),
    "video/x-msvideo": ("video/x-msvideo", "avi"),
    "video/mpeg": ("video/mpeg", "mpg"),
    "video/3gpp": ("video/3gpp", "3gp"),
    "video/x-flv": ("video/x-flv", "flv"),
    "image/jpeg": ("image/jpeg", "jpg"),
    "image/png": ("image/png", "png"),
    "image/gif": ("image/gif", "gif"),
    "image/webp": ("image/webp", "webp"),
    "image/bmp": ("image/bmp", "bmp"),
    "image/heic": ("image/heic", "heic"),
    "image/avif": ("image/avif", "avif"),
}


def _mpeg_audio_frame(head: bytes) -> bool:
    # MPEG audio frame sync (11 bits set) with a layer field other than 00 (which is AAC's ADTS).
    return len(head) > 3 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and (head[1] >> 1) & 0x03 != 0


def sniff(head: bytes) -> tuple[str, str] | None:
    """The (MIME type, extension) of an accepted kind the bytes start with, or None."""
    kind = filetype.guess(head)
    if kind is not None:
        return ACCEPTED.get(kind.mime)
    if _mpeg_audio_frame(head):
        return ACCEPTED["audio/mpeg"]
    return None
