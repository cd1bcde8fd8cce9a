"""The Python client and the `conveyor` CLI against the app served on 127.0.0.1 (stub broker, worker threads)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from conveyor.client import APIError, Client
from web.cli import main

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "lecture.mp3"


def test_the_client_submits_follows_and_reads_jobs(base_url, user):
    with Client(base_url, user.token) as client:
        seen: list[float] = []
        job = client.submit("demo", {"items": 3, "sleep": 0.2}, project_id="book")
        done = client.wait(job["id"], progress=lambda j: seen.append(j["progress"]), timeout=30)
        assert done["status"] == "completed" and done["result"] == {"double": 10, "negated": -5}
        assert seen == sorted(seen) and seen[-1] == 100.0 and len(seen) > 2

        assert client.get(job["id"])["id"] == job["id"]
        assert [j["id"] for j in client.list(project_id="book")["jobs"]] == [job["id"]]
        assert client.events(job["id"]).__next__()[1]["status"] == "completed"
        assert {p["name"] for p in client.pipelines()} >= {"demo", "noop_chain"}


def test_the_client_polls_uploads_cancels_retries_and_raises_problems(base_url, user, tmp_path):
    with Client(base_url, user.token) as client:
        stored = client.upload(SAMPLE)
        assert stored["ref"] == f"file:{stored['id']}" and stored["content_type"] == "audio/mpeg"
        job = client.submit("noop_chain", {"audio": stored["ref"]})
        done = client.wait(job["id"], poll_interval=0.05, timeout=30)
        assert client.download(done["result"]["audio"], tmp_path / "copy.mp3").read_bytes() == SAMPLE.read_bytes()

        slow = client.submit("demo", {"items": 20, "sleep": 1})
        assert client.cancel(slow["id"])["status"] == "canceled"
        assert client.retry(slow["id"])["attempt"] == 2
        client.cancel(slow["id"])

        with pytest.raises(APIError) as invalid:
            client.submit("demo", {"items": "lots"})
        assert invalid.value.status == 422 and invalid.value.problem["errors"][0]["field"] == "input.items"
        with pytest.raises(APIError) as missing:
            client.get("00000000-0000-0000-0000-000000000000")
        assert missing.value.status == 404


def test_the_cli_submits_with_a_progress_bar_and_prints_the_result(base_url, user, monkeypatch):
    monkeypatch.setenv("CONVEYOR_URL", base_url)
    monkeypatch.setenv("CONVEYOR_TOKEN", user.token)
    runner = CliRunner()

    waited = runner.invoke(main, ["submit", "demo", "items=2", "sleep=0.1", "fail_items=[1]", "--wait"])
    assert waited.exit_code == 0, waited.output
    assert "double: 0" in waited.output and "negated: 0" in waited.output

    started = runner.invoke(main, ["submit", "noop_chain", f"audio=@{SAMPLE}", "note=hello"])
    assert started.exit_code == 0, started.output
    job_id = started.output.strip().splitlines()[-1]

    with Client(base_url, user.token) as client:
        job = client.wait(job_id, timeout=30)
    assert job["input"]["audio"].startswith("file:") and job["input"]["note"] == "hello"

    status = runner.invoke(main, ["status", job_id])
    assert status.exit_code == 0 and "completed" in status.output and "stage4" in status.output
    listing = runner.invoke(main, ["jobs", "--pipeline", "noop_chain"])
    assert job_id in listing.output

    slow = runner.invoke(main, ["submit", "demo", "items=20", "sleep=1"]).output.strip().splitlines()[-1]
    assert runner.invoke(main, ["cancel", slow]).output.strip() == f"{slow} canceled"
    assert runner.invoke(main, ["retry", slow]).output.startswith(f"{slow} processing")
    runner.invoke(main, ["cancel", slow])
    again = runner.invoke(main, ["cancel", job_id])
    assert again.exit_code != 0 and "409" in again.output


def test_the_cli_reports_a_failed_job_and_a_missing_token(base_url, user, monkeypatch):
    monkeypatch.setenv("CONVEYOR_URL", base_url)
    monkeypatch.setenv("CONVEYOR_TOKEN", user.token)
    failed = CliRunner().invoke(main, ["submit", "demo_strict", "items=2", "fail_items=[0]", "--wait"])
    assert failed.exit_code == 1 and "failed" in failed.output and "demo_failure" in failed.output

    monkeypatch.delenv("CONVEYOR_TOKEN")
    missing = CliRunner().invoke(main, ["jobs"])
    assert missing.exit_code != 0 and "CONVEYOR_TOKEN" in missing.output


def test_the_cli_reports_a_local_file_the_server_refuses(base_url, user, monkeypatch, tmp_path):
    monkeypatch.setenv("CONVEYOR_URL", base_url)
    monkeypatch.setenv("CONVEYOR_TOKEN", user.token)
    notes = tmp_path / "lecture.txt"
    notes.write_text("not audio at all\n")
    refused = CliRunner().invoke(main, ["submit", "audio_clean", f"audio={notes}"])
    assert refused.exit_code == 1, refused.output
    assert f"{notes} was not uploaded: 415" in refused.output
    assert isinstance(refused.exception, SystemExit)  # a clean exit, not an uncaught error


def test_the_cli_keeps_metadata_lists_by_it_and_prints_warnings(base_url, user, monkeypatch):
    monkeypatch.setenv("CONVEYOR_URL", base_url)
    monkeypatch.setenv("CONVEYOR_TOKEN", user.token)
    runner = CliRunner()
    # When a job that warns is submitted with metadata and waited for
    waited = runner.invoke(main, ["submit", "demo", "items=2", "warn_items=[1]", "--wait",
                                  "--metadata", '{"person_name": "Ada"}'])
    assert waited.exit_code == 0, waited.output
    assert "warning at work: demo_warning: item 1 made do" in waited.output
    # Then the list finds it by its metadata, and its status shows both
    with Client(base_url, user.token) as client:
        [job] = client.list(metadata={"person_name": "Ada"})["jobs"]
    assert job["metadata"] == {"person_name": "Ada"}
    listing = runner.invoke(main, ["jobs", "--metadata", "person_name=Ada"])
    assert listing.output.count(job["id"]) == 1
    assert runner.invoke(main, ["jobs", "--metadata", "person_name=Grace"]).output.strip() == "no jobs"
    status = runner.invoke(main, ["status", job["id"]]).output
    assert 'metadata: {"person_name": "Ada"}' in status and "warning at work" in status
    refused = runner.invoke(main, ["submit", "demo", "--metadata", "{not json"])
    assert refused.exit_code == 2 and "not JSON" in refused.output
