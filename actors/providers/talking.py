"""Talking video: an avatar speaking an audio track, locally or with D-ID.

The local provider animates the avatar's jaw and mouth from the audio's loudness: each frame's
RMS (see :func:`actors.media.video.frame_loudness`) stretches the chin region down and opens a dark
mouth there. It is lip movement in time with the sound, not lip-sync of phonemes.

D-ID: the audio is uploaded (``POST /audios``), a talk is created (``POST /talks`` with the
avatar's ``source_url``) and polled (``GET /talks/{id}``: created/started/done/error) without
holding a thread; its ``result_url`` is copied into our storage.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from actors.context import current_stage
from actors.errors import InvalidMedia
from actors.files.storage import local_copy
from actors.media.ffmpeg import probe
from actors.media.video import frame_loudness, read_samples, write_frames
from actors.providers import LOCAL, pick
from actors.providers.avatar import DIDAvatars, MouthSpot, read_mouth
from actors.providers.remote import PollSchedule, RemoteProvider, answered, saved_or_new, upload_file

FPS = 25
LEVELS = 24  #: distinct mouth openings rendered (frames reuse them)
JAW_DROP = 0.3  #: the widest opening, in mouth widths
DID_POLL_SECONDS = 3.0  #: s between polls of a D-ID talk
MAX_SECONDS = 600.0  #: s; longer speech is refused


class MouthAnimator:
    """Renders an avatar with its mouth open by a given fraction, caching each opening level."""

    def __init__(self, avatar: Image.Image, mouth: MouthSpot) -> None:
        self.base = avatar.convert("RGB")
        width, height = self.base.size
        self.mouth_x = mouth.x * width
        self.mouth_y = mouth.y * height
        self.mouth_w = max(8.0, mouth.width * width)
        self._cache: dict[int, np.ndarray] = {}

    def frame(self, openness: float) -> np.ndarray:
        level = int(round(min(1.0, max(0.0, openness)) * (LEVELS - 1)))
        if level not in self._cache:
            self._cache[level] = np.asarray(self._render(level / (LEVELS - 1)))
        return self._cache[level]

    def _render(self, openness: float) -> Image.Image:
        image = self.base.copy()
        drop = int(round(openness * JAW_DROP * self.mouth_w))
        if drop <= 0:
            return image
        width, height = image.size
        # The jaw: the region from the lips to below the chin, stretched down by ``drop`` pixels.
        left = int(max(0, self.mouth_x - 1.0 * self.mouth_w))
        right = int(min(width, self.mouth_x + 1.0 * self.mouth_w))
        top = int(min(height - 2, self.mouth_y))
        bottom = int(min(height, self.mouth_y + 1.6 * self.mouth_w))
        if right - left < 4 or bottom - top < 4:
            return image
        jaw = image.crop((left, top, right, bottom)).resize((right - left, bottom - top + drop))
        feather = Image.new("L", jaw.size, 0)
        ImageDraw.Draw(feather).ellipse((0, -jaw.height, jaw.width - 1, jaw.height - 1), fill=255)
        feather = feather.filter(ImageFilter.GaussianBlur(max(1.0, self.mouth_w / 10)))
        image.paste(jaw, (left, top), feather)
        # The open mouth: a dark, soft-edged ellipse between the lips.
        mouth = Image.new("L", image.size, 0)
        half = self.mouth_w * 0.3
        ImageDraw.Draw(mouth).ellipse(
            (self.mouth_x - half, self.mouth_y - drop * 0.4, self.mouth_x + half, self.mouth_y + drop * 0.7),
            fill=210,
        )
        mouth = mouth.filter(ImageFilter.GaussianBlur(max(1.0, self.mouth_w / 25)))
        image.paste(Image.new("RGB", image.size, (45, 18, 22)), (0, 0), mouth)
        return image


def animate(avatar_png: Path, audio_path: Path, out_path: Path, *, fps: int = FPS) -> Path:
    """Write an MP4 of the avatar speaking ``audio_path`` (H.264 + AAC, as long as the audio).

    Raises:
      InvalidMedia: when the audio is empty or too long, or the avatar is not an image.
    """
    info = probe(audio_path)
    if not info.has_audio or not info.duration:
        raise InvalidMedia("the speech has no audio")
    if info.duration > MAX_SECONDS:
        raise InvalidMedia(f"the speech is longer than {MAX_SECONDS:.0f} s")
    rate = 16000
    loudness = frame_loudness(read_samples(audio_path, rate=rate), rate, fps)
    try:
        with Image.open(avatar_png) as image:
            avatar = image.convert("RGB")
    except OSError:
        raise InvalidMedia("the avatar is not an image") from None
    # Frames must be multiples of 16 px; avatars are 512 px, other images are fitted.
    side = max(16, min(avatar.size) // 16 * 16)
    if avatar.size != (side, side):
        avatar = avatar.resize((side, side))
    animator = MouthAnimator(avatar, read_mouth(avatar_png))
    ctx = current_stage()
    total = len(loudness)

    def frames() -> Any:
        for index, level in enumerate(loudness):
            if index % (fps * 2) == 0:
                ctx.progress(0.1 + 0.85 * index / max(1, total), "Animating the avatar")
            yield animator.frame(float(level))

    return write_frames(frames(), out_path, size=(side, side), fps=fps, audio_path=audio_path,
                        duration=info.duration)


class LocalTalkingVideo:
    """The avatar's mouth moved by the speech's loudness, rendered on this machine."""

    def render(self, avatar: dict[str, Any], audio_path: Path, out_path: Path) -> Path:
        with local_copy(avatar["image"]) as image:
            return animate(image, audio_path, out_path)


class DIDTalkingVideo(RemoteProvider):
    """D-ID talks: upload the speech, create a talk, poll it, copy the result into our storage."""

    name, label, job_noun = "did", "D-ID", "talk"
    base_url_variable = "DID_BASE_URL"
    secret = ("did_api_key", "DID_API_KEY")
    auth_scheme = "Basic"
    create_path, poll_path = "/talks", "/talks/{id}"
    done_states, failed_states = frozenset({"done"}), frozenset({"error", "rejected"})
    schedule = PollSchedule(DID_POLL_SECONDS)

    def result_url(self, answer: dict[str, Any]) -> Any:
        return answer.get("result_url")

    def failure_reason(self, answer: dict[str, Any]) -> Any:
        error = answer.get("error")
        return error.get("description") or error.get("kind") if isinstance(error, dict) else error

    def _upload_audio(self, audio_path: Path) -> str:
        content_type = "audio/mpeg" if audio_path.suffix.lower() == ".mp3" else "audio/wav"
        answer = upload_file(self.client, f"{self.base_url}/audios", audio_path, headers=self.headers,
                             field="audio", content_type=content_type)
        return answered(answer.get("url"), "D-ID did not return an audio URL")

    def _upload_avatar(self, image_ref: str) -> str:
        with local_copy(image_ref) as image:
            return DIDAvatars(self.client, self.base_url, self.api_key).upload_image(image)

    def _source_url(self, avatar: dict[str, Any]) -> str:
        if avatar.get("source_url"):
            return str(avatar["source_url"])
        return saved_or_new("did_image_url", self.name, lambda: self._upload_avatar(avatar["image"]))

    def render(self, avatar: dict[str, Any], audio_path: Path, out_path: Path) -> Path:
        source_url = self._source_url(avatar)
        audio_url = saved_or_new("did_audio_url", self.name, lambda: self._upload_audio(audio_path))
        result_url = self.run({"source_url": source_url, "script": {"type": "audio", "audio_url": audio_url},
                               "config": {"stitch": True}}, what="the talking video")
        return self.fetch_result(result_url, out_path, no_video="D-ID's result has no video")


def talking_video_maker() -> LocalTalkingVideo | DIDTalkingVideo:
    """The configured provider: D-ID when ``DID_API_KEY`` is set, else the local animation."""
    factory = pick("talking_video", {LOCAL: LocalTalkingVideo, "did": DIDTalkingVideo})
    return factory()

