"""An emulated OpenAI API: audio transcriptions (``whisper-1``) and chat completions with JSON schema.

Shapes follow the public API: bearer auth, multipart ``/v1/audio/transcriptions`` answering
``verbose_json`` (``task``, ``language``, ``duration``, ``text``, ``segments``, ``words``), the 25 MB
upload limit (413), and ``/v1/chat/completions`` answering a ``chat.completion`` whose message
content is JSON filling the requested ``json_schema``. Errors use OpenAI's ``{"error": {...}}`` body.
Base URL for the SDK: ``emulator.base_url + "/v1"``.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

from flask import Blueprint, jsonify, request

#: bytes; OpenAI's transcription upload limit.
UPLOAD_LIMIT = 25 * 1024 * 1024
WORD_SECONDS = 0.4  #: s each emulated word lasts


def _error(status: int, message: str, kind: str = "invalid_request_error", param: str | None = None,
           code: str | None = None):
    return jsonify({"error": {"message": message, "type": kind, "param": param, "code": code}}), status


def _authorized() -> bool:
    return request.headers.get("Authorization", "").startswith("Bearer ") and len(
        request.headers["Authorization"]) > len("Bearer ")


def fill_schema(schema: dict[str, Any], words: list[str]) -> Any:
    """A value satisfying a (strict, simple) JSON schema, with strings made from ``words``."""
    kind = schema.get("type")
    if kind == "object":
        return {name: fill_schema(sub, words) for name, sub in schema.get("properties", {}).items()}
    if kind == "array":
        return [fill_schema(schema.get("items", {}), words[i:] or words) for i in range(2)]
    if kind in ("integer", "number"):
        return 1
    if kind == "boolean":
        return True
    return " ".join(words[:6]) or "text"


def _schema_in(prompt: str) -> dict[str, Any] | None:
    """The JSON Schema a prompt spells out after its last "JSON Schema" (as a self-hosted model reads it)."""
    at = prompt.rfind("JSON Schema")
    start = prompt.find("{", at) if at >= 0 else -1
    if start < 0:
        return None
    try:
        value, _ = json.JSONDecoder().raw_decode(prompt[start:])
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def openai_blueprint(*, transcript: str = "Welcome to the lecture. An atom is the smallest unit of matter.",
                     language: str = "english", chat_content: str | None = None,
                     ignore_response_format: bool = False, answers: list[str] | None = None) -> Blueprint:
    """The blueprint; ``transcript`` is what every upload "says", ``chat_content`` overrides chat answers.

    ``ignore_response_format`` acts as a self-hosted server (llama.cpp, vLLM, Ollama) that does not
    enforce ``response_format``: the JSON comes from the schema written in the prompt, wrapped in prose
    and a code fence. ``answers`` are served first, one per chat request, in order.
    """
    bp = Blueprint("openai", __name__)
    queued = list(answers or [])

    @bp.post("/v1/audio/transcriptions")
    def transcriptions():
        if not _authorized():
            return _error(401, "Incorrect API key provided.", "invalid_request_error", code="invalid_api_key")
        upload = request.files.get("file")
        if upload is None:
            return _error(400, "you must provide a file", param="file")
        size = len(upload.read())
        if size > UPLOAD_LIMIT:
            return _error(413, f"Maximum content size limit ({UPLOAD_LIMIT}) exceeded ({size} bytes read)")
        if request.form.get("model") != "whisper-1":
            return _error(400, f"Invalid model {request.form.get('model')!r}", param="model")
        words = transcript.split()
        timed = [{"word": re.sub(r"[^\w'-]", "", w), "start": i * WORD_SECONDS, "end": (i + 1) * WORD_SECONDS}
                 for i, w in enumerate(words)]
        segments: list[dict[str, Any]] = []
        start = 0
        for i, word in enumerate(words):
            if word.endswith((".", "?", "!")) or i == len(words) - 1:
                segments.append({"id": len(segments), "seek": 0, "start": start * WORD_SECONDS,
                                 "end": (i + 1) * WORD_SECONDS, "text": " " + " ".join(words[start : i + 1]),
                                 "tokens": [], "temperature": 0.0, "avg_logprob": -0.2,
                                 "compression_ratio": 1.2, "no_speech_prob": 0.01})
                start = i + 1
        if request.form.get("response_format", "json") != "verbose_json":
            return jsonify({"text": transcript})
        granularities = request.form.getlist("timestamp_granularities[]")
        body: dict[str, Any] = {"task": "transcribe", "language": request.form.get("language") or language,
                                "duration": len(words) * WORD_SECONDS, "text": transcript,
                                "segments": segments}
        if "word" in granularities:
            body["words"] = timed
        return jsonify(body)

    @bp.post("/v1/chat/completions")
    def chat():
        if not _authorized():
            return _error(401, "Incorrect API key provided.", code="invalid_api_key")
        data = request.get_json(silent=True) or {}
        if not data.get("model") or not data.get("messages"):
            return _error(400, "model and messages are required", param="messages")
        fmt = data.get("response_format") or {}
        prompt = " ".join(str(m.get("content", "")) for m in data["messages"] if m.get("role") == "user")
        if queued:
            content = queued.pop(0)
        elif chat_content is not None:
            content = chat_content
        elif ignore_response_format:
            schema = _schema_in(prompt)
            words = re.findall(r"[A-Za-z]{4,}", prompt.split("JSON Schema")[0]) or ["notes"]
            filled = json.dumps(fill_schema(schema, words), indent=2) if schema else "{}"
            content = f"Sure! Here are the notes you asked for:\n\n```json\n{filled}\n```\n\nAnything else?"
        elif fmt.get("type") == "json_schema":
            prompt = " ".join(str(m.get("content", "")) for m in data["messages"] if m.get("role") == "user")
            words = re.findall(r"[A-Za-z]{4,}", prompt) or ["notes"]
            content = json.dumps(fill_schema(fmt["json_schema"]["schema"], words))
        else:
            content = "Notes."
        return jsonify({
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()),
            "model": data["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": None},
                         "logprobs": None, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
        })

    return bp
