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
from actors.limits import provider_slot
from actors.media.video import read_samples
from actors.providers import LOCAL, missing_modules, pick
from actors.providers.remote import PROVIDER_ID, http_client, json_of, require_secret
from actors.providers.tts import PIPER_VOICE, LocalVoice, synthesize_local
from conveyor.config import settings

RATE = 16000  #: Hz of the analysed samples
FRAME = 800  #: samples per pitch frame (50 ms: a 23 ms window plus the longest period)
HOP = 160  #: samples between frames (10 ms)
PITCH_RANGE = (60.0, 400.0)  #: Hz
YIN_THRESHOLD = 0.3  #: normalized difference under which a frame counts as voiced
MAX_ANALYSIS_SECONDS = 90.0  #: s of the sample that are measured
MIN_VOICED_SECONDS = 0.5  #: s; a sample with less voiced speech cannot be profiled
#: What the local voice reads to measure itself once per process.
REFERENCE_TEXT = (
    "It was a quiet morning in the village, and the baker had already opened his shop. "
    "People came in one by one, talking about the weather, the market and the news from the city. "
    "By noon the bread was gone, so he sat down by the window and read the paper until the evening."
)


@dataclass(frozen=True)
class VoiceTraits:
    """What the local provider measures of a voice sample."""

    median_pitch_hz: float
    syllables_per_second: float
    voiced_seconds: float


def _frame_pitch(frame: np.ndarray) -> float | None:
    """The fundamental frequency of one frame (YIN's normalized difference), or None when unvoiced."""
    tau_min, tau_max = int(RATE / PITCH_RANGE[1]), int(RATE / PITCH_RANGE[0])
    window = len(frame) - tau_max
    x = frame.astype(np.float64) - float(frame.mean())
    size = 1 << (2 * len(x) - 1).bit_length()
    spectrum_a = np.fft.rfft(x[:window], size)
    spectrum_b = np.fft.rfft(x, size)
    cross = np.fft.irfft(np.conj(spectrum_a) * spectrum_b, size)[: tau_max + 1]
    squares = np.concatenate(([0.0], np.cumsum(x * x)))
    energy_0 = squares[window]
    energy_tau = squares[window : window + tau_max + 1] - squares[: tau_max + 1]
    diff = np.maximum(energy_0 + energy_tau - 2.0 * cross, 0.0)
    if energy_0 <= 1e-9:
        return None
    cumulative = np.cumsum(diff[1:])
    normalized = np.ones_like(diff)
    normalized[1:] = diff[1:] * np.arange(1, tau_max + 1) / np.maximum(cumulative, 1e-12)
    # The first dip under the threshold is the period; later dips are its multiples.
    below = np.nonzero(normalized[tau_min : tau_max + 1] < YIN_THRESHOLD)[0]
    if below.size == 0:
        return None
    tau = tau_min + int(below[0])
    while tau + 1 <= tau_max and normalized[tau + 1] < normalized[tau]:
        tau += 1
    # Parabolic interpolation around the minimum for sub-sample precision.
    if 0 < tau < tau_max:
        a, b, c = normalized[tau - 1], normalized[tau], normalized[tau + 1]
        denominator = a - 2 * b + c
        shift = 0.5 * (a - c) / denominator if denominator else 0.0
        return RATE / (tau + max(-0.5, min(0.5, shift)))
    return RATE / tau


def _syllable_rate(samples: np.ndarray) -> float:
    """Peaks of the vowel-band loudness envelope per second of speech (a rough speaking rate).

    The envelope is the RMS of the 300-2500 Hz band over 20 ms windows every 10 ms, lightly
    smoothed; a peak counts when it stands above a quarter of the loud level, 80 ms or more
    after the previous one. It follows tempo changes at about two thirds of their size.
    """
    spectrum = np.fft.rfft(samples)
    freqs = np.fft.rfftfreq(len(samples), 1.0 / RATE)
    spectrum[(freqs < 300) | (freqs > 2500)] = 0
    band = np.fft.irfft(spectrum, len(samples))
    windows = np.lib.stride_tricks.sliding_window_view(band, 320)[::HOP]
    envelope = np.convolve(np.sqrt(np.mean(windows**2, axis=1)), np.ones(3) / 3, mode="same")
    threshold = 0.25 * float(np.percentile(envelope, 95))
    peaks, last = 0, -100
    for i in range(1, len(envelope) - 1):
        is_peak = envelope[i] > threshold and envelope[i] >= envelope[i - 1] and envelope[i] > envelope[i + 1]
        if is_peak and i - last >= 8:
            peaks, last = peaks + 1, i
    speech_seconds = float(np.count_nonzero(envelope > threshold)) * HOP / RATE
    return peaks / speech_seconds if speech_seconds > 0 else 0.0


def analyze(samples: np.ndarray) -> VoiceTraits:
    """Measure the median pitch and the speaking rate of mono 16 kHz samples (the first 90 s).

    Raises:
      InvalidMedia: when the sample holds too little voiced speech.
    """
    samples = samples[: int(MAX_ANALYSIS_SECONDS * RATE)].astype(np.float64)
    count = max(0, 1 + (len(samples) - FRAME) // HOP)
    if count == 0:
        raise InvalidMedia("the voice sample is too short")
    frames = np.lib.stride_tricks.sliding_window_view(samples, FRAME)[::HOP][:count]
    rms = np.sqrt(np.mean(frames**2, axis=1))
    loud = rms > max(1e-4, 0.1 * float(np.percentile(rms, 95)))
    pitches = [p for frame, ok in zip(frames, loud, strict=True) if ok and (p := _frame_pitch(frame))]
    voiced_seconds = len(pitches) * HOP / RATE
    if voiced_seconds < MIN_VOICED_SECONDS:
        raise InvalidMedia("the voice sample has too little speech to measure "
                           "(at least half a second of voice is needed)")
    return VoiceTraits(float(np.median(pitches)), _syllable_rate(samples), voiced_seconds)


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

    The voice id is checkpointed, so a redelivered message does not add the voice twice. Where the
    local voice is installed (``conveyor[local]``), the id also carries the local profile of the same
    sample, used when ElevenLabs is not configured later.
    """

    def __init__(self, client: httpx.Client | None = None, base_url: str | None = None,
                 api_key: str | None = None) -> None:
        self.client = client or http_client()
        self.base_url = (base_url or settings().base_url("ELEVENLABS_BASE_URL")).rstrip("/")
        self.api_key = api_key or require_secret("elevenlabs_api_key", "ELEVENLABS_API_KEY")

    def clone(self, audio_path: Path, name: str) -> str:
        ctx = current_stage()
        local = None
        if not missing_modules("voice_clone", LOCAL):  # the fallback profile is measured with the local voice
            local = json.loads(LocalVoiceCloner().clone(audio_path, name))
        voice_id = ctx.saved(PROVIDER_ID)
        if not voice_id:
            with audio_path.open("rb") as sample, provider_slot("elevenlabs"):
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
        fallback = {"local": local} if local else {}
        return json.dumps({"provider": "elevenlabs", "voice_id": voice_id, **fallback},
                          sort_keys=True, separators=(",", ":"))


def voice_cloner() -> LocalVoiceCloner | ElevenLabsVoiceCloner:
    """The configured cloner: ElevenLabs when ``ELEVENLABS_API_KEY`` is set, else the local profile."""
    factory = pick("voice_clone", {LOCAL: LocalVoiceCloner, "elevenlabs": ElevenLabsVoiceCloner})
    return factory()
