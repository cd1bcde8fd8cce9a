"""Voice cloning: a local voice profile, or an ElevenLabs instant voice clone.

The local provider does **not** clone a voice. It measures the sample's median pitch and its
speaking rate, and picks the nearest local voice (there is one, Piper's ``en_US-joe-medium``)
with the pitch shift and tempo that bring it closest to the sample. The result sounds like the
local voice at the sample's pitch and pace, not like the speaker. Use ElevenLabs
(``ELEVENLABS_API_KEY``) for a real clone.
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import httpx
import numpy as np

from actors.context import current_stage
from actors.errors import InvalidMedia, PermanentError
from actors.providers import LOCAL, pick
from actors.providers.remote import PROVIDER_ID, http_client, json_of, require_secret
from actors.providers.tts import PIPER_VOICE, LocalVoice, synthesize_local
from actors.video import read_samples
from conveyor.config import settings

RATE = 16000  #: Hz of the analysed samples
FRAME = 640  #: samples per pitch frame (40 ms)
HOP = 160  #: samples between frames (10 ms)
PITCH_RANGE = (60.0, 400.0)  #: Hz
MIN_VOICED_SECONDS = 1.0  #: a sample with less voiced speech cannot be profiled
#: What the local voice reads to measure itself once per process.
REFERENCE_TEXT = (
    "The quick brown fox jumps over the lazy dog. We measured the pitch and the pace of this "
    "voice so that other samples can be compared with it."
)


@dataclass(frozen=True)
class VoiceTraits:
    """What the local provider measures of a voice sample."""

    median_pitch_hz: float
    syllables_per_second: float
    voiced_seconds: float


def _frame_pitch(frame: np.ndarray) -> float | None:
    """The fundamental frequency of one frame by autocorrelation, or None when unvoiced."""
    frame = frame - frame.mean()
    energy = float(np.dot(frame, frame))
    if energy <= 1e-9:
        return None
    spectrum = np.fft.rfft(frame * np.hanning(len(frame)), 2 * len(frame))
    corr = np.fft.irfft(np.abs(spectrum) ** 2)[: len(frame)]
    lo, hi = int(RATE / PITCH_RANGE[1]), int(RATE / PITCH_RANGE[0])
    lag = lo + int(np.argmax(corr[lo:hi]))
    if corr[lag] < 0.35 * corr[0]:  # weak periodicity: noise or an unvoiced sound
        return None
    # Parabolic interpolation around the peak for sub-sample precision.
    if 0 < lag < len(corr) - 1:
        a, b, c = corr[lag - 1], corr[lag], corr[lag + 1]
        denominator = a - 2 * b + c
        if denominator:
            lag = lag + 0.5 * (a - c) / denominator
    return RATE / lag


def analyze(samples: np.ndarray) -> VoiceTraits:
    """Measure the median pitch and the speaking rate of mono 16 kHz samples.

    The rate counts peaks of the loudness envelope (roughly syllable nuclei) per second of speech.

    Raises:
      InvalidMedia: when the sample holds too little voiced speech.
    """
    count = max(0, 1 + (len(samples) - FRAME) // HOP)
    if count == 0:
        raise InvalidMedia("the voice sample is too short")
    frames = np.lib.stride_tricks.sliding_window_view(samples, FRAME)[::HOP][:count]
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
    loud = rms > max(1e-4, 0.1 * float(np.percentile(rms, 95)))
    pitches = [p for frame, ok in zip(frames, loud, strict=True) if ok and (p := _frame_pitch(frame))]
    voiced_seconds = len(pitches) * HOP / RATE
    if voiced_seconds < MIN_VOICED_SECONDS:
        raise InvalidMedia("the voice sample has too little speech to measure (at least 1 s is needed)")
    envelope = np.convolve(rms, np.ones(5) / 5, mode="same")  # 50 ms smoothing
    threshold = 0.25 * float(np.percentile(envelope, 95))
    peaks, last = 0, -100
    for i in range(1, len(envelope) - 1):
        is_peak = envelope[i] > threshold and envelope[i] >= envelope[i - 1] and envelope[i] > envelope[i + 1]
        if is_peak and i - last >= 10:  # at most one syllable per 100 ms
            peaks, last = peaks + 1, i
    speech_seconds = max(float(np.count_nonzero(envelope > threshold)) * HOP / RATE, 1e-3)
    return VoiceTraits(float(np.median(pitches)), peaks / speech_seconds, voiced_seconds)


@cache
def local_voice_traits() -> VoiceTraits:
    """The local Piper voice's own pitch and pace, measured once per process."""
    with tempfile.TemporaryDirectory(prefix="conveyor-voice-") as tmp:
        path = synthesize_local(REFERENCE_TEXT, Path(tmp) / "reference.wav")
        return analyze(read_samples(path, rate=RATE))


def profile_for(traits: VoiceTraits) -> LocalVoice:
    """The local voice, shifted to the sample's median pitch and scaled to its pace (within limits)."""
    own = local_voice_traits()
    semitones = 12.0 * math.log2(traits.median_pitch_hz / own.median_pitch_hz)
    tempo = traits.syllables_per_second / own.syllables_per_second if own.syllables_per_second else 1.0
    return LocalVoice.from_dict({"voice": PIPER_VOICE, "pitch_semitones": round(semitones, 2),
                                 "tempo": round(tempo, 3)})


class LocalVoiceCloner:
    """Picks the local voice with the pitch shift and tempo nearest to the sample (no real cloning)."""

    def clone(self, audio_path: Path, name: str) -> str:
        """A local voice id (JSON) for the sample at ``audio_path``."""
        return profile_for(analyze(read_samples(audio_path, rate=RATE))).to_id()


class ElevenLabsVoiceCloner:
    """ElevenLabs instant voice cloning: ``POST /v1/voices/add`` (multipart) answers ``voice_id``.

    The voice id is checkpointed, so a redelivered message does not add the voice twice. The id
    also carries the local profile of the same sample, used when ElevenLabs is not configured later.
    """

    def __init__(self, client: httpx.Client | None = None, base_url: str | None = None,
                 api_key: str | None = None) -> None:
        self.client = client or http_client()
        self.base_url = (base_url or settings().base_url("ELEVENLABS_BASE_URL")).rstrip("/")
        self.api_key = api_key or require_secret("elevenlabs_api_key", "ELEVENLABS_API_KEY")

    def clone(self, audio_path: Path, name: str) -> str:
        ctx = current_stage()
        local = json.loads(LocalVoiceCloner().clone(audio_path, name))
        voice_id = ctx.saved(PROVIDER_ID)
        if not voice_id:
            with audio_path.open("rb") as sample:
                body = json_of(self.client.post(
                    f"{self.base_url}/v1/voices/add",
                    headers={"xi-api-key": self.api_key, "Accept": "application/json"},
                    data={"name": name[:100] or "Conveyor persona", "remove_background_noise": "false"},
                    files={"files": (audio_path.name, sample, "audio/wav")},
                ))  # fmt: skip
            voice_id = body.get("voice_id")
            if not isinstance(voice_id, str) or not voice_id:
                raise PermanentError("ElevenLabs did not return a voice id", code="provider_failed")
            ctx.checkpoint(PROVIDER_ID, voice_id)
        return json.dumps({"provider": "elevenlabs", "voice_id": voice_id, "local": local},
                          sort_keys=True, separators=(",", ":"))


def voice_cloner() -> LocalVoiceCloner | ElevenLabsVoiceCloner:
    """The configured cloner: ElevenLabs when ``ELEVENLABS_API_KEY`` is set, else the local profile."""
    factory = pick("voice_clone", {LOCAL: LocalVoiceCloner, "elevenlabs": ElevenLabsVoiceCloner},
                   "elevenlabs_api_key")
    return factory()
