"""Logs carry the running stage and never a secret; metrics describe the job store."""

from __future__ import annotations

import json
import logging
import os

from conveyor.config import configure, load_settings
from conveyor.logs import bind_stage, clear_stage, configure_logging
from pipelines.services.jobs import start_job
from pipelines.services.metrics import render_metrics
from tests.support.jobs import wait_for_job


def test_json_logs_carry_job_and_stage_and_redact_secrets(capfd):
    configure(load_settings({**os.environ, "OPENAI_API_KEY": "sk-canary-123456789"}))
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging(json=True)
        bind_stage("job-1", "transcribe", 3)
        logging.getLogger("actors.test").warning("calling with sk-canary-123456789 now")
        clear_stage()
        logging.getLogger("actors.test").warning("after the stage")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
        configure()
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines() if line.startswith("{")]
    assert lines[0]["job_id"] == "job-1" and lines[0]["stage"] == "transcribe" and lines[0]["item"] == 3
    assert "sk-canary" not in lines[0]["event"] and "***" in lines[0]["event"]
    assert lines[0]["level"] == "warning" and lines[0]["logger"] == "actors.test"
    assert "job_id" not in lines[1]


def test_metrics_report_jobs_by_status_and_stage_durations(stub_worker):
    wait_for_job(start_job(pipeline="noop_chain", input={})["id"])
    start_job(pipeline="demo", input={"items": 1, "sleep": 5})
    body, content_type = render_metrics()
    text = body.decode()
    assert content_type.startswith("text/plain")
    assert 'conveyor_jobs{pipeline="noop_chain",status="completed"} 1.0' in text
    assert 'conveyor_stage_duration_seconds{pipeline="noop_chain",stage="stage1"}' in text
    assert "conveyor_queue_lag_seconds" in text
