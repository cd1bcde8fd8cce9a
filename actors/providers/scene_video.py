"""Scene video: a script cut into a storyboard, and one clip per scene, locally or with Luma.

The storyboard is cut from the script itself: by paragraphs, else by sentences, else in chunks
of characters at word boundaries (with a ``storyboard_fallback`` warning on the job); adjacent
pieces are merged (balanced by length) down to the scene limit. There are never zero scenes for
a non-empty script.

The local clip is a title card of the scene's description with a slow zoom (ffmpeg ``zoompan``)
and the description read aloud by the local voice. Luma Dream Machine generates a clip from the
description as a prompt (``POST /dream-machine/v1/generations``, polled with ``GET .../{id}``:
queued/dreaming/completed/failed) and the narration is laid over it, its last frame held while
the narration runs on. Every clip leaves here in :data:`actors.media.video.CLIP_FORMAT`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, TypedDict

from actors.context import current_stage
from actors.errors import InvalidInput
from actors.media.ffmpeg import probe
from actors.media.video import CLIP_FORMAT, normalize_clip, render_title_card, zoom_clip
from actors.providers import LOCAL, pick
from actors.providers.remote import PollSchedule, RemoteProvider
from actors.providers.tts import speak

CHUNK_CHARS = 280  #: target length of a character chunk when the script has no sentences
STORYBOARD_FALLBACK = "storyboard_fallback"  #: the warning of a storyboard cut into character chunks
MIN_SCENE_SECONDS = 2.5  #: s; a scene lasts its narration plus a pause, at least this
PAUSE_SECONDS = 0.6  #: s of quiet after the narration
#: Polls of a Luma generation back off: 5 s after the first, twice as long after each, at most 60 s
#: (a clip takes minutes, so later polls mostly find it still dreaming).
LUMA_POLLS = PollSchedule(first=5.0, factor=2.0, most=60.0)
LUMA_MODEL = "ray-2"
PROMPT_CHARS = 2000  #: the longest prompt sent to a provider

_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"')\]]*\s+")


def _clean(text: str) -> str:
    return " ".join(text.split())


def _chunks(text: str, size: int) -> list[str]:
    words, chunks, current = text.split(), [], ""
    for word in words:
        if current and len(current) + 1 + len(word) > size:
            chunks.append(current)
            current = word
        else:
            current = f"{current} {word}".strip()
    if current:
        chunks.append(current)
    return chunks


def _merge(pieces: list[str], count: int) -> list[str]:
    """Join adjacent pieces into ``count`` groups of similar length, keeping their order."""
    if len(pieces) <= count:
        return pieces
    total = sum(len(p) for p in pieces)
    groups: list[str] = []
    current: list[str] = []
    done = 0
    for index, piece in enumerate(pieces):
        current.append(piece)
        done += len(piece)
        remaining_pieces = len(pieces) - index - 1
        remaining_groups = count - len(groups) - 1
        target = total * (len(groups) + 1) / count
        if remaining_groups > 0 and (done >= target or remaining_pieces == remaining_groups):
            groups.append(" ".join(current))
            current = []
    if current:
        groups.append(" ".join(current))
    return groups


class Scene(TypedDict):
    """One scene of a storyboard: its 1-based number and what it shows."""

    scene_number: int
    description: str


def storyboard(script: str, max_scenes: int) -> list[Scene]:
    """Cut ``script`` into at most ``max_scenes`` scenes: ``[{"scene_number", "description"}]``.

    Raises:
      InvalidInput: when the script is blank or ``max_scenes`` is below 1.
    """
    if max_scenes < 1:
        raise InvalidInput("max_scenes must be at least 1")
    paragraphs = [_clean(p) for p in re.split(r"\n\s*\n", script) if p.strip()]
    if not paragraphs:
        raise InvalidInput("the script is empty")
    pieces = paragraphs
    if len(pieces) == 1:
        pieces = [s for s in (_clean(s) for s in _SENTENCE_END.split(paragraphs[0])) if s]
    if len(pieces) == 1 and len(pieces[0]) > CHUNK_CHARS:
        pieces = _chunks(pieces[0], CHUNK_CHARS)
        current_stage().warn(STORYBOARD_FALLBACK, "The script has no paragraphs or sentence ends to cut scenes at: "
                                                  f"it was cut into pieces of about {CHUNK_CHARS} characters at "
                                                  "word boundaries, so a scene may start mid-sentence.")
    scenes = _merge(pieces, max_scenes)
    return [{"scene_number": i + 1, "description": d} for i, d in enumerate(scenes)]


class LocalSceneVideo:
    """A title card with a slow zoom, narrated by the local (or configured) voice."""

    def render(self, description: str, *, scene_number: int, scenes_total: int, work_dir: Path) -> Path:
        """Write the scene's clip under ``work_dir`` and return its path."""
        fmt = CLIP_FORMAT
        card = render_title_card(description, heading=f"Scene {scene_number} of {scenes_total}",
                                 size=(fmt.width * 2, fmt.height * 2))
        card_path = work_dir / "card.png"
        card.save(card_path)
        narration = speak(description, work_dir, name="narration")
        duration = max(MIN_SCENE_SECONDS, (probe(narration).duration or 0.0) + PAUSE_SECONDS)
        return zoom_clip(card_path, work_dir / "scene.mp4", duration=duration, audio_path=narration)


class LumaSceneVideo(RemoteProvider):
    """Luma Dream Machine: create a generation, poll it, copy the video into our format."""

    name, label, job_noun = "luma", "Luma", "generation"
    base_url_variable = "LUMA_BASE_URL"
    secret = ("luma_api_key", "LUMA_API_KEY")
    create_path, poll_path = "/dream-machine/v1/generations", "/dream-machine/v1/generations/{id}"
    state_field, error_field = "state", "failure_reason"
    done_states, failed_states = frozenset({"completed"}), frozenset({"failed"})
    schedule = LUMA_POLLS

    def result_url(self, answer: dict[str, Any]) -> Any:
        return (answer.get("assets") or {}).get("video")

    def render(self, description: str, *, scene_number: int, scenes_total: int, work_dir: Path) -> Path:
        url = self.run({"prompt": description[:PROMPT_CHARS], "model": LUMA_MODEL, "aspect_ratio": "16:9"},
                       what=f"scene {scene_number}")
        raw = self.fetch_result(url, work_dir / "luma.mp4")
        narration = speak(description, work_dir, name="narration")
        return normalize_clip(raw, work_dir / "scene.mp4", narration=narration)


def scene_video_maker() -> LocalSceneVideo | LumaSceneVideo:
    """The configured provider: Luma when ``LUMA_API_KEY`` is set, else the local title-card clip."""
    factory = pick("scene_video", {LOCAL: LocalSceneVideo, "luma": LumaSceneVideo})
    return factory()
