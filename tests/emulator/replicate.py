"""An emulated Replicate API: file uploads and predictions (create, poll), with downloadable outputs.

``POST /v1/files`` (multipart ``content``) answers ``urls.get``; ``POST /v1/predictions`` with
``version`` and ``input`` answers a ``starting`` prediction; ``GET /v1/predictions/{id}`` moves
it through ``processing`` to ``succeeded`` with ``output``, a URL on this emulator. For a video
input the output is a real alpha matte of it (ffmpeg: gray, thresholded), like a matting model's.
An ``input`` with ``"emulator_fail": true`` ends ``failed``. ``Authorization: Bearer`` is required.
"""

from __future__ import annotations

import threading
import uuid

from flask import Response, jsonify, request

from tests.emulator.luma import to_mp4
from tests.emulator.server import CANCELED, DONE, FAILED, PENDING, RUNNING, JobsBlueprint, JobStore

_STATUS = {PENDING: "starting", RUNNING: "processing", DONE: "succeeded", FAILED: "failed", CANCELED: "canceled"}


def replicate_blueprint(store: JobStore | None = None) -> JobsBlueprint:
    """The Replicate routes; ``store`` decides how many polls a prediction takes (default 2)."""
    jobs = store if store is not None else JobStore(done_after_polls=2)
    files: dict[str, bytes] = {}
    outputs: dict[str, bytes] = {}
    lock = threading.Lock()
    bp = JobsBlueprint("replicate", __name__, jobs)

    @bp.before_request
    def authorize():
        if request.path.startswith("/replicate-outputs/"):
            return None  # delivery URLs are public, like replicate.delivery
        if not request.headers.get("Authorization", "").startswith("Bearer "):
            return jsonify({"title": "Unauthenticated", "detail": "You did not pass a valid token",
                            "status": 401}), 401
        return None

    def file_url(file_id: str) -> str:
        return request.host_url.rstrip("/") + f"/v1/files/{file_id}"

    def view(job) -> dict:
        output = None
        if job.status == DONE:
            output = request.host_url.rstrip("/") + f"/replicate-outputs/{job.id}.mp4"
        return {"id": job.id, "version": job.input["version"], "input": job.input["input"],
                "status": _STATUS[job.status], "output": output, "error": job.error,
                "urls": {"get": request.host_url.rstrip("/") + f"/v1/predictions/{job.id}"}}

    @bp.post("/v1/files")
    def upload():
        content = request.files.get("content")
        if content is None:
            return jsonify({"title": "Invalid request", "detail": "content is required", "status": 400}), 400
        file_id = uuid.uuid4().hex[:16]
        with lock:
            files[file_id] = content.read()
        return jsonify({"id": file_id, "name": content.filename, "size": len(files[file_id]),
                        "urls": {"get": file_url(file_id)}}), 201

    @bp.get("/v1/files/<file_id>")
    def file_info(file_id: str):
        if file_id not in files:
            return jsonify({"title": "Not found", "status": 404}), 404
        return jsonify({"id": file_id, "size": len(files[file_id]), "urls": {"get": file_url(file_id)}})

    @bp.post("/v1/predictions")
    def create():
        body = request.get_json(silent=True) or {}
        if not isinstance(body.get("version"), str) or not isinstance(body.get("input"), dict):
            return jsonify({"title": "Invalid request", "detail": "version and input are required",
                            "status": 422}), 422
        fail = "the prediction failed on purpose" if body["input"].get("emulator_fail") else None
        return jsonify(view(jobs.create(body, fail_with=fail))), 201

    @bp.get("/v1/predictions/<prediction_id>")
    def poll(prediction_id: str):
        job = jobs.poll(prediction_id)
        if job is None:
            return jsonify({"title": "Not found", "detail": "Prediction not found", "status": 404}), 404
        return jsonify(view(job))

    @bp.get("/replicate-outputs/<prediction_id>.mp4")
    def output(prediction_id: str):
        job = jobs.get(prediction_id)
        if job is None or job.status != DONE:
            return jsonify({"title": "Not found", "status": 404}), 404
        with lock:
            if prediction_id not in outputs:
                source = str(job.input["input"].get("input_video", ""))
                data = files.get(source.rsplit("/", 1)[-1])
                if data is None:
                    return jsonify({"title": "Input not found", "status": 404}), 404
                outputs[prediction_id] = _matte(data)
            return Response(outputs[prediction_id], mimetype="video/mp4")

    return bp


def _matte(video: bytes) -> bytes:
    """A black-and-white matte of ``video``: bright pixels are the subject (a stand-in for a model)."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory(prefix="emulator-") as tmp:
        source = Path(tmp) / "in.mp4"
        source.write_bytes(video)
        return to_mp4(["-i", str(source), "-an", "-vf", "format=gray,lut=y='if(gt(val,128),255,0)'"])
