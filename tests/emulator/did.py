"""An emulated D-ID API: image and audio uploads, and talks (create, poll) with a real result video.

``POST /images`` (multipart ``image``) and ``POST /audios`` (multipart ``audio``) answer an
``s3://`` URL, as D-ID does; ``POST /talks`` with ``source_url`` and an audio ``script`` answers a
``created`` talk; ``GET /talks/{id}`` moves it through ``started`` to ``done`` with ``result_url``:
an MP4 of the uploaded image held still over the uploaded audio. An unknown ``source_url`` or
``audio_url`` is refused with 400 like the real service. A test makes a talk end in ``error`` by
setting ``fail_with`` on its job in ``blueprint.jobs``. ``Authorization: Basic`` is required.
"""

from __future__ import annotations

import tempfile
import threading
import uuid
from pathlib import Path

from flask import Response, jsonify, request

from actors.media.ffmpeg import probe
from tests.emulator.luma import to_mp4
from tests.emulator.server import CANCELED, DONE, FAILED, PENDING, RUNNING, JobsBlueprint, JobStore

_STATUS = {PENDING: "created", RUNNING: "started", DONE: "done", FAILED: "error", CANCELED: "error"}


def did_blueprint(store: JobStore | None = None) -> JobsBlueprint:
    """The D-ID routes; ``store`` decides how many polls a talk takes (default 2)."""
    jobs = store if store is not None else JobStore(done_after_polls=2)
    images: dict[str, bytes] = {}
    audios: dict[str, bytes] = {}
    results: dict[str, bytes] = {}
    lock = threading.Lock()
    bp = JobsBlueprint("did", __name__, jobs)

    @bp.before_request
    def authorize():
        if request.path.startswith("/did-results/"):
            return None
        if not request.headers.get("Authorization", "").startswith("Basic "):
            return jsonify({"kind": "AuthorizationError", "description": "authorization required"}), 401
        return None

    def upload(field: str, bucket: str, store_in: dict[str, bytes]):
        part = request.files.get(field)
        if part is None:
            return jsonify({"kind": "ValidationError", "description": f"{field} is required"}), 400
        file_id = uuid.uuid4().hex[:12]
        url = f"s3://{bucket}/{file_id}/{part.filename or field}"
        with lock:
            store_in[url] = part.read()
        return jsonify({"id": file_id, "url": url}), 201

    @bp.post("/images")
    def upload_image():
        return upload("image", "d-id-images-prod", images)

    @bp.post("/audios")
    def upload_audio():
        return upload("audio", "d-id-audios-prod", audios)

    def view(job) -> dict:
        body = {"id": job.id, "object": "talk", "status": _STATUS[job.status],
                "source_url": job.input["source_url"]}
        if job.status == DONE:
            body["result_url"] = request.host_url.rstrip("/") + f"/did-results/{job.id}.mp4"
        if job.status == FAILED:
            body["error"] = {"kind": "FaceError", "description": job.error}
        return body

    @bp.post("/talks")
    def create():
        body = request.get_json(silent=True) or {}
        script = body.get("script") or {}
        source, audio = body.get("source_url"), script.get("audio_url")
        if script.get("type") != "audio" or source not in images or audio not in audios:
            return jsonify({"kind": "ValidationError", "description": "unknown source_url or audio_url"}), 400
        return jsonify(view(jobs.create(body))), 201

    @bp.get("/talks/<talk_id>")
    def poll(talk_id: str):
        job = jobs.poll(talk_id)
        if job is None:
            return jsonify({"kind": "NotFoundError", "description": "talk not found"}), 404
        return jsonify(view(job))

    @bp.get("/did-results/<talk_id>.mp4")
    def result(talk_id: str):
        job = jobs.get(talk_id)
        if job is None or job.status != DONE:
            return jsonify({"kind": "NotFoundError"}), 404
        with lock:
            if talk_id not in results:
                results[talk_id] = _still_with_audio(images[job.input["source_url"]],
                                                     audios[job.input["script"]["audio_url"]])
            return Response(results[talk_id], mimetype="video/mp4")

    return bp


def _still_with_audio(image: bytes, audio: bytes) -> bytes:
    with tempfile.TemporaryDirectory(prefix="emulator-") as tmp:
        (Path(tmp) / "image").write_bytes(image)
        (Path(tmp) / "audio").write_bytes(audio)
        return to_mp4(["-loop", "1", "-i", str(Path(tmp) / "image"), "-i", str(Path(tmp) / "audio"),
                       "-vf", "scale=256:256", "-r", "25", "-c:a", "aac",
                       # Not -shortest: it overshoots by the frames the encoder had buffered when the
                       # audio ended (seconds of them on a busy machine). End at the audio's end.
                       "-t", f"{probe(Path(tmp) / 'audio').duration:.3f}"])
