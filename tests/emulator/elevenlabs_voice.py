"""An emulated ElevenLabs voice API: instant voice cloning and text to speech.

``POST /v1/voices/add`` (multipart ``name`` and ``files``) answers ``{"voice_id"}``;
``POST /v1/text-to-speech/{voice_id}`` (JSON ``text``) answers ``audio/mpeg`` bytes: a real MP3
of a tone lasting 60 ms per character (no speech). The premade voices and the added ones are
known; another id answers 404 ``voice_not_found``. Errors use ``{"detail": {"status", "message"}}``.
"""

from __future__ import annotations

import threading
import uuid

from flask import Blueprint, Response, jsonify, request

from tests.emulator.luma import ffmpeg

#: Voice ids every account has.
PREMADE_VOICES = ("21m00Tcm4TlvDq8ikWAM",)
SECONDS_PER_CHAR = 0.06


def _error(status: int, code: str, message: str):
    return jsonify({"detail": {"status": code, "message": message}}), status


class VoicesBlueprint(Blueprint):
    """The voice routes together with the voices they know, which tests read."""

    def __init__(self, name: str, import_name: str, voices: dict[str, dict]) -> None:
        super().__init__(name, import_name)
        self.voices = voices


def elevenlabs_voice_blueprint() -> VoicesBlueprint:
    voices: dict[str, dict] = {v: {"name": "premade", "samples": 0} for v in PREMADE_VOICES}
    lock = threading.Lock()
    bp = VoicesBlueprint("elevenlabs_voice", __name__, voices)

    @bp.before_request
    def authorize():
        if not request.headers.get("xi-api-key"):
            return _error(401, "invalid_api_key", "Invalid API key")
        return None

    @bp.post("/v1/voices/add")
    def add_voice():
        name = request.form.get("name")
        samples = request.files.getlist("files")
        if not name or not samples:
            return _error(422, "invalid_request", "name and files are required")
        voice_id = uuid.uuid4().hex[:20]
        with lock:
            voices[voice_id] = {"name": name, "samples": len(samples)}
        return jsonify({"voice_id": voice_id, "requires_verification": False})

    @bp.post("/v1/text-to-speech/<voice_id>")
    def text_to_speech(voice_id: str):
        if voice_id not in voices:
            return _error(404, "voice_not_found", f"A voice with the voice_id {voice_id} was not found.")
        text = (request.get_json(silent=True) or {}).get("text")
        if not isinstance(text, str) or not text.strip():
            return _error(422, "invalid_request", "text is required")
        seconds = max(0.3, len(text) * SECONDS_PER_CHAR)
        mp3 = ffmpeg(["-f", "lavfi", "-i", f"sine=frequency=220:duration={seconds:.2f}", "-c:a", "libmp3lame",
                      "-b:a", "64k", "-f", "mp3", "pipe:1"])
        return Response(mp3, mimetype="audio/mpeg")

    return bp
