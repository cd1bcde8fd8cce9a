"""Caps on the media a job may process, checked from a probe before any work (issue 14).

A 2 MB FLAC of three hours of silence became 180 transcription calls; a 10000×10000 video and a
9000×9000 PNG took a worker to 1.7 GB. The stage that runs before a fan-out (or before decoding)
probes the input and raises :class:`~actors.errors.MediaTooLarge` (``media_too_large``, permanent)
when it is over a cap; :func:`over_caps` is the same test for media already described (an
upload's stored probe, at job submission).

- ``CONVEYOR_MAX_MEDIA_SECONDS`` (default 4 h): duration of audio or video.
- ``CONVEYOR_MAX_FRAME_PIXELS`` (default 7680×4320, 8K, 33.2 Mpx): pixels of a video frame.
- ``CONVEYOR_MAX_IMAGE_PIXELS`` (default 40 Mpx): pixels of an input image.
"""

from __future__ import annotations

from pathlib import Path

from actors.errors import InvalidMedia, MediaTooLarge
from actors.media.ffmpeg import MediaInfo, probe
from conveyor.config import settings


def over_caps(duration: float | None, width: int | None, height: int | None, *, image: bool = False) -> str | None:
    """Why media of this duration and size is refused (a sentence naming the cap), or None."""
    current = settings()
    if duration is not None and duration > current.max_media_seconds:
        return (f"the media lasts {duration:.0f} s, over the limit of {current.max_media_seconds:.0f} s "
                f"(CONVEYOR_MAX_MEDIA_SECONDS)")
    if width and height:
        limit, setting, what = ((current.max_image_pixels, "CONVEYOR_MAX_IMAGE_PIXELS", "image") if image else
                                (current.max_frame_pixels, "CONVEYOR_MAX_FRAME_PIXELS", "video frame"))
        if width * height > limit:
            return (f"the {what} is {width}×{height} ({width * height} pixels), over the limit of {limit} "
                    f"pixels ({setting})")
    return None


def check_info(info: MediaInfo) -> MediaInfo:
    """Raise MediaTooLarge when probed media is over a cap; returns ``info``."""
    reason = over_caps(info.duration, info.width, info.height)
    if reason:
        raise MediaTooLarge(reason)
    return info


def check_media(path: Path) -> MediaInfo:
    """Probe ``path`` (InvalidMedia if unreadable) and check it against the caps."""
    return check_info(probe(path))


def image_size(path: Path) -> tuple[int, int]:
    """An image's width and height, read from its header (nothing is decoded)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.size
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise InvalidMedia(f"the image cannot be read ({type(exc).__name__})") from None


def check_image(path: Path) -> tuple[int, int]:
    """Raise MediaTooLarge when the image at ``path`` has more pixels than the cap; returns its size."""
    width, height = image_size(path)
    reason = over_caps(None, width, height, image=True)
    if reason:
        raise MediaTooLarge(reason)
    return width, height
