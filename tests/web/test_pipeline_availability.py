"""The API on an install without ``conveyor[local]``: pipelines it cannot run are marked and refused."""

from __future__ import annotations

import pytest

import actors.providers as providers
from actors.providers import LOCAL_MODULES
from conveyor.config import configure, settings

LOCAL_ONLY = {m for by_provider in LOCAL_MODULES.values() for names in by_provider.values() for m in names}


@pytest.fixture
def base_install(monkeypatch: pytest.MonkeyPatch, db: str) -> None:
    """No local provider packages, and only an OpenAI key."""
    real = providers.module_installed
    monkeypatch.setattr(providers, "module_installed", lambda name: name not in LOCAL_ONLY and real(name))
    configure(settings(), secrets={"openai_api_key": "sk-test-123456"}, provider={}, workers_have_local=False)


def test_the_listing_marks_what_cannot_run_here_and_why(client, auth, base_install):
    listed = {p["name"]: p for p in client.get("/api/pipelines", headers=auth).get_json()["pipelines"]}
    assert listed["lecture_notes"]["available"] is True
    assert listed["lecture_notes"]["unavailable_reason"] is None
    assert listed["roto"]["available"] is False
    assert listed["roto"]["unavailable_reason"] == "install conveyor[local] or set REPLICATE_API_TOKEN"
    assert listed["persona"]["unavailable_reason"] == (
        "install conveyor[local] or set ELEVENLABS_API_KEY and DID_API_KEY")
    assert listed["color_grade"]["available"] is True


def test_a_job_of_a_pipeline_that_cannot_run_here_is_refused_at_submission(client, auth, base_install):
    response = client.post("/api/jobs", json={"pipeline": "noise_removal", "input": {"audio": "file:abc"}},
                           headers=auth)
    assert response.status_code == 422
    problem = response.get_json()
    assert {"field": "pipeline", "message": "noise_removal cannot run here: install conveyor[local] or set "
            "ELEVENLABS_API_KEY"} in problem["errors"]
    # Nothing was queued.
    assert client.get("/api/jobs", headers=auth).get_json()["jobs"] == []
