"""The base install (``pip install .``, no extras) as a web dyno and a worker dyno with a provider key.

A fresh virtualenv gets Conveyor without ``[local]``; from it, the Procfile's web, worker and clock run
(honcho, as on Heroku: from the project folder) against Redis, PostgreSQL and the provider emulator
on loopback. The API lists what the install can and cannot run, refuses a pipeline that needs the
local extra, and a worker finishes ``lecture_notes`` through the emulated OpenAI API.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from actors.providers import LOCAL_MODULES
from conveyor.statuses import TERMINAL
from tests.emulator.openai_api import openai_blueprint
from tests.emulator.server import start_emulator
from tests.support.processes import stop_process_group, wait_until_healthy

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "lecture.mp3"
LOCAL_ONLY = sorted({m for by_provider in LOCAL_MODULES.values() for names in by_provider.values() for m in names})
INSTALL_TIMEOUT = 600  #: s for the virtualenv and the base install (uv: seconds; pip: a minute or two)
JOB_TIMEOUT = 120  #: s for the job once the API is up
TRANSCRIPT = "Welcome to the lecture. An atom is the smallest unit of matter."


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def base_virtualenv(folder: Path) -> Path:
    """A new virtualenv at ``folder`` with ``pip install .`` (no extras); returns its bin folder.

    uv when ``make install`` put it beside this Python (its cache is warm then), pip otherwise.
    """
    uv = Path(sys.executable).parent / "uv"
    if uv.is_file():
        subprocess.run([str(uv), "venv", "--quiet", "--python", sys.executable, str(folder)], check=True,
                       timeout=INSTALL_TIMEOUT)
        subprocess.run([str(uv), "pip", "install", "--quiet", "--python", str(folder / "bin" / "python"), str(ROOT)],
                       check=True, timeout=INSTALL_TIMEOUT)
    else:
        subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True, timeout=INSTALL_TIMEOUT)
        subprocess.run([str(folder / "bin" / "python"), "-m", "pip", "install", "--quiet", str(ROOT)], check=True,
                       timeout=INSTALL_TIMEOUT)
    return folder / "bin"


@pytest.mark.slow
@pytest.mark.timeout(INSTALL_TIMEOUT + 300)
def test_a_base_install_serves_the_api_and_runs_a_cloud_pipeline(tmp_path):
    bin_dir = base_virtualenv(tmp_path / "base")
    found = subprocess.run(
        [str(bin_dir / "python"), "-c",
         f"import importlib.util as u; print([m for m in {LOCAL_ONLY!r} if u.find_spec(m)])"],
        cwd=tmp_path, capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "[]", "the base install has local provider packages"

    emulator = start_emulator(openai_blueprint(transcript=TRANSCRIPT))
    port = _free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CONVEYOR_PROVIDER_") and not k.endswith(("_API_KEY", "_API_TOKEN"))
           and k not in ("VIRTUAL_ENV", "PYTHONPATH", "CONVEYOR_WORKERS_HAVE_LOCAL")}
    env.update({"PORT": str(port), "WEB_CONCURRENCY": "1", "WORKER_PROCESSES": "1", "WORKER_THREADS": "4",
                "STORAGE_URL": f"file://{tmp_path / 'files'}", "CONVEYOR_VAR_DIR": str(tmp_path / "var"),
                "OPENAI_API_KEY": "sk-emulated-key", "OPENAI_BASE_URL": emulator.url("/v1"),
                "PATH": f"{bin_dir}:{os.environ['PATH']}"})
    release = subprocess.run([str(bin_dir / "conveyor"), "db", "upgrade"], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=120)
    assert release.returncode == 0, release.stderr
    user = subprocess.run([str(bin_dir / "conveyor"), "users", "create", "base-install"], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=True, timeout=120)
    headers = {"Authorization": f"Bearer {user.stdout.strip().splitlines()[-1]}"}
    log_path = tmp_path / "honcho.log"
    log = log_path.open("wb")
    honcho = subprocess.Popen([str(bin_dir / "honcho"), "start", "-f", "Procfile", "web", "worker", "clock"],
                              cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_healthy(base, honcho, log_path)

        listed = {p["name"]: p for p in httpx.get(f"{base}/api/pipelines", headers=headers).json()["pipelines"]}
        assert listed["lecture_notes"]["available"] is True
        assert listed["roto"] == {**listed["roto"], "available": False,
                                  "unavailable_reason": "install conveyor[local] or set REPLICATE_API_TOKEN"}
        refused = httpx.post(f"{base}/api/jobs", json={"pipeline": "noise_removal", "input": {"audio": "file:x"}},
                             headers=headers, timeout=10)
        assert refused.status_code == 422
        assert "install conveyor[local] or set ELEVENLABS_API_KEY" in refused.text

        with SAMPLE.open("rb") as sample:
            uploaded = httpx.post(f"{base}/api/files", files={"file": (SAMPLE.name, sample, "audio/mpeg")},
                                  headers=headers, timeout=30)
        assert uploaded.status_code == 201, uploaded.text
        created = httpx.post(f"{base}/api/jobs", headers=headers, timeout=10, json={
            "pipeline": "lecture_notes", "input": {"audio": f"file:{uploaded.json()['id']}"}})
        assert created.status_code == 202, created.text
        job_url = base + created.headers["Location"]
        deadline = time.monotonic() + JOB_TIMEOUT
        while (job := httpx.get(job_url, headers=headers, timeout=10).json())["status"] not in TERMINAL:
            assert time.monotonic() < deadline, (job, log_path.read_text()[-3000:])
            time.sleep(0.3)
        assert job["status"] == "completed", (job, log_path.read_text()[-3000:])
        assert TRANSCRIPT in job["result"]["transcript"]
        assert job["result"]["title"] and job["result"]["sections"]
        assert emulator.calls_to("/v1/audio/transcriptions", "POST")
        assert emulator.calls_to("/v1/chat/completions", "POST")
    finally:
        stop_process_group(honcho)
        log.close()
        emulator.stop()
        shutil.rmtree(tmp_path / "base", ignore_errors=True)
