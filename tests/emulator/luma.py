"""An emulated Luma Dream Machine API: create a generation, poll it, download its video.

``POST /dream-machine/v1/generations`` (JSON with ``prompt``, ``Authorization: Bearer``) answers
201 with a ``queued`` generation; ``GET /dream-machine/v1/generations/{id}`` moves it through
``dreaming`` to ``completed`` with ``assets.video``, a URL on this emulator serving a real MP4
(1 s, 320x180, no audio: not Conveyor's clip format, so clients must normalize it). A prompt
containing :data:`FAIL_MARKER` ends ``failed``. Errors use Luma's ``{"detail": ...}`` body.
"""

from __future__ import annotations

import subprocess
import tempfile
from functools import cache
from pathlib import Path

from flask import Response, jsonify, request

from tests.emulator.server import CANCELED, DONE, FAILED, PENDING, RUNNING, JobsBlueprint, JobStore

#: A prompt containing this makes the generation fail.
FAIL_MARKER = "[emulator:fail]"
_STATES = {PENDING: "queued", RUNNING: "dreaming", DONE: "completed", FAILED: "failed", CANCELED: "failed"}


def ffmpeg(args: list[str], data: bytes | None = None) -> bytes:
    """Run the project's ffmpeg and return what it wrote to stdout (output ``pipe:1``)."""
    import imageio_ffmpeg

    done = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin",
                           *args], input=data, capture_output=True, timeout=120, check=True)
    return done.stdout


def to_mp4(args: list[str]) -> bytes:
    """Run ffmpeg with ``args`` (inputs and filters) into a regular MP4 file; returns its bytes."""
    with tempfile.TemporaryDirectory(prefix="emulator-") as tmp:
        out = Path(tmp) / "out.mp4"
        ffmpeg([*args, "-c:v", "libx264", "-pix_fmt", "yuv420p", str(out)])
        return out.read_bytes()


@cache
def sample_clip(seconds: float = 1.0, size: str = "320x180") -> bytes:
    """A small real MP4 (test pattern, H.264, no audio), made once per process."""
    return to_mp4(["-f", "lavfi", "-i", f"testsrc=size={size}:rate=24", "-t", str(seconds)])


def luma_blueprint(store: JobStore | None = None) -> JobsBlueprint:
    """The Luma routes; ``store`` decides how many polls a generation takes (default 2)."""
    jobs = store if store is not None else JobStore(done_after_polls=2)
    bp = JobsBlueprint("luma", __name__, jobs)

    def unauthorized():
        if not request.headers.get("Authorization", "").startswith("Bearer "):
            return jsonify({"detail": "Invalid API key"}), 401
        return None

    def view(job) -> dict:
        state = _STATES[job.status]
        video = request.host_url.rstrip("/") + f"/luma-files/{job.id}.mp4" if job.status == DONE else None
        return {"id": job.id, "state": state, "request": job.input, "failure_reason": job.error,
                "assets": {"video": video} if video else None, "model": job.input.get("model")}

    @bp.post("/dream-machine/v1/generations")
    def create():
        denied = unauthorized()
        if denied:
            return denied
        body = request.get_json(silent=True) or {}
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            return jsonify({"detail": "prompt is required"}), 400
        fail = "the generation failed on purpose" if FAIL_MARKER in prompt else None
        return jsonify(view(jobs.create(body, fail_with=fail))), 201

    @bp.get("/dream-machine/v1/generations/<generation_id>")
    def poll(generation_id: str):
        denied = unauthorized()
        if denied:
            return denied
        job = jobs.poll(generation_id)
        if job is None:
            return jsonify({"detail": "Generation not found"}), 404
        return jsonify(view(job))

    @bp.get("/luma-files/<generation_id>.mp4")
    def video(generation_id: str):
        job = jobs.get(generation_id)
        if job is None or job.status != DONE:
            return jsonify({"detail": "Not found"}), 404
        return Response(sample_clip(), mimetype="video/mp4")

    return bp
