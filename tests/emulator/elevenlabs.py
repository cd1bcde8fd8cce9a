"""An emulated ElevenLabs audio isolation endpoint: ``POST /v1/audio-isolation``.

Like the real API it takes a multipart ``audio`` file with the ``xi-api-key`` header and answers
the isolated audio as ``audio/mpeg`` bytes; here the upload is transcoded to MP3 as it is (no
isolation). Errors use ElevenLabs' ``{"detail": {"status", "message"}}`` body.
"""

from __future__ import annotations

import subprocess

from flask import Blueprint, Response, jsonify, request

#: bytes; uploads larger than this are refused like the real service's size limit.
UPLOAD_LIMIT = 500 * 1024 * 1024


def _error(status: int, code: str, message: str):
    return jsonify({"detail": {"status": code, "message": message}}), status


def to_mp3(data: bytes) -> bytes | None:
    """``data`` (any audio) transcoded to MP3 with the project's ffmpeg; None when it is not audio."""
    import imageio_ffmpeg

    done = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-i", "pipe:0",
         "-vn", "-c:a", "libmp3lame", "-b:a", "128k", "-f", "mp3", "pipe:1"],
        input=data, capture_output=True, timeout=120, check=False,
    )
    return done.stdout if done.returncode == 0 and done.stdout else None


def elevenlabs_blueprint() -> Blueprint:
    bp = Blueprint("elevenlabs", __name__)

    @bp.post("/v1/audio-isolation")
    def audio_isolation():
        if not request.headers.get("xi-api-key"):
            return _error(401, "invalid_api_key", "Invalid API key")
        upload = request.files.get("audio")
        if upload is None:
            return _error(422, "invalid_request", "Field required: audio")
        data = upload.read()
        if len(data) > UPLOAD_LIMIT:
            return _error(413, "file_too_large", "The uploaded file is too large")
        mp3 = to_mp3(data)
        if mp3 is None:
            return _error(400, "invalid_audio", "Could not decode the uploaded audio")
        return Response(mp3, mimetype="audio/mpeg")

    return bp
