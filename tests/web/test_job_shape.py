"""The job object is declared once (``conveyor.job_shape``, ``conveyor.statuses``): the API answers it,
the OpenAPI description documents it, and the client and the tests use its terminal statuses."""

from __future__ import annotations

from pydantic import TypeAdapter

import conveyor.client
import pipelines.store.models
import tests.support.jobs
from conveyor import statuses
from conveyor.job_shape import JobOut, StageOut
from tests.support.jobs import wait_for_job
from tests.support.web import submit

#: The job object's fields as the REST contract names them, in the order the API writes them.
JOB_FIELDS = ["id", "pipeline", "status", "progress", "step", "eta_seconds", "stages", "input", "result", "errors",
              "error", "warnings", "metadata", "project_id", "attempt", "webhook", "created_at", "started_at",
              "finished_at", "updated_at"]
STAGE_FIELDS = ["name", "status", "progress", "attempts", "items", "started_at", "finished_at", "error"]


def test_the_client_and_the_tests_use_the_one_declaration_of_the_statuses():
    assert conveyor.client.TERMINAL is statuses.TERMINAL
    assert tests.support.jobs.TERMINAL is statuses.TERMINAL
    assert pipelines.store.models.JobStatus is statuses.JobStatus
    assert set(statuses.TERMINAL) == {"completed", "failed", "canceled"}
    assert [s.value for s in statuses.JobStatus] == ["pending", "processing", "completed", "failed", "canceled"]


def test_the_openapi_job_lists_the_contracts_fields(client):
    schemas = client.get("/api/openapi.json").get_json()["components"]["schemas"]
    job = schemas["JobOut"]
    assert list(job["properties"]) == JOB_FIELDS
    assert job["required"] == [f for f in JOB_FIELDS if f not in ("warnings", "metadata")]
    stage = schemas[job["properties"]["stages"]["items"]["$ref"].rsplit("/", 1)[-1]]
    assert list(stage["properties"]) == STAGE_FIELDS
    assert stage["required"] == ["name", "status", "progress", "attempts"]
    status = schemas[job["properties"]["status"]["$ref"].rsplit("/", 1)[-1]]
    assert status["enum"] == ["pending", "processing", "completed", "failed", "canceled"]
    assert schemas["JobAcceptedOut"]["properties"] == job["properties"]


def test_the_api_answers_a_job_of_the_declared_shape(client, auth, stub_worker):
    # A new job, and the same job finished, are JobOut's fields in its order and valid as one
    created = submit(client, auth, input={"items": 3})
    wait_for_job(created["id"])
    done = client.get(f"/api/jobs/{created['id']}", headers=auth).get_json()
    stages = TypeAdapter(list[StageOut])
    for job in (created, done):
        assert list(job) == list(JobOut.model_fields) == JOB_FIELDS
        assert JobOut.model_validate(job).model_dump(mode="json") == job
        assert stages.validate_python(job["stages"]) == job["stages"]
        assert all(set(stage) == set(STAGE_FIELDS) for stage in job["stages"])
    assert all(list(stage) == STAGE_FIELDS for stage in created["stages"])
    assert [s["status"] for s in done["stages"]] == ["completed"] * len(done["stages"])
    assert done["stages"][1]["items"] == {"total": 3, "completed": 3, "failed": 0}
