"""Request and response models of the REST API; the OpenAPI description is generated from them.

The job object itself, :class:`~conveyor.job_shape.JobOut`, is declared with the stage summary it holds
in :mod:`conveyor.job_shape`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from conveyor.job_shape import JobOut
from conveyor.statuses import JobStatus


class ProblemOut(BaseModel):
    """An error (RFC 9457 problem details, ``application/problem+json``)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    errors: list[dict[str, str]] | None = Field(None, description="Each bad field: `{field, message}`.")
    limit: str | None = Field(None, description="The limit that refused the request (413, 429): e.g. `job_rate`, "
                                                "`upload_rate`, `upload_bytes`, `user_quota_bytes`, `max_json_bytes`.")


class JobIn(BaseModel):
    """A job request."""

    model_config = ConfigDict(extra="forbid")

    pipeline: str = Field(min_length=1, max_length=100,
                          description="The name of a registered pipeline (see GET /api/pipelines).")
    input: dict[str, Any] = Field(default_factory=dict, description="The pipeline's input (its `input_schema`).")
    project_id: str | None = Field(None, max_length=100, description="Your own grouping key, for filtering.")
    webhook_url: str | None = Field(None, max_length=2048,
                                    description="https:// URL that receives the job JSON when it finishes.")
    metadata: Any = Field(None, description="Any JSON you want kept beside the job (e.g. `{\"person_name\": "
                                            "\"Ada\"}`), returned unchanged; at most 4096 bytes as compact JSON. "
                                            "List jobs by a string value of it with `?metadata.<key>=<value>`.")


class JobAcceptedOut(JobOut):
    """The job just accepted (or, for a repeated Idempotency-Key, the job it created)."""

    model_config = {"openapi_extra": {"headers": {  # type: ignore[typeddict-unknown-key]  # flask-openapi3's key
        "Location": {"description": "The job's URL: `/api/jobs/{id}`.", "schema": {"type": "string"}},
        "Retry-After": {"description": "Seconds to wait before polling the job.", "schema": {"type": "integer"}},
    }}}


#: The longest Idempotency-Key (the column that keeps it).
MAX_IDEMPOTENCY_KEY = 200


class JobRequestHeaders(BaseModel):
    idempotency_key: str | None = Field(
        None, alias="Idempotency-Key", max_length=MAX_IDEMPOTENCY_KEY,
        description="Makes retries of this request safe: the same key and body return the same job, the same key "
                    f"with another body answers 422. Keys are yours alone; at most {MAX_IDEMPOTENCY_KEY} characters.")


class JobListOut(BaseModel):
    jobs: list[JobOut]
    next_cursor: str | None


class JobPath(BaseModel):
    job_id: str


class JobsQuery(BaseModel):
    pipeline: str | None = None
    status: JobStatus | None = None
    project_id: str | None = None
    limit: int = Field(20, ge=1, le=100)
    cursor: str | None = Field(None, max_length=200,
                               description="`next_cursor` of the previous page; any other value answers 422.")


class GrantOut(BaseModel):
    """A short-lived URL that opens one resource without the Authorization header (for browsers)."""

    url: str
    expires_in: int = Field(description="Seconds the grant can be used.")


class PipelineOut(BaseModel):
    name: str
    description: str
    stages: list[str]
    input_schema: dict[str, Any] = Field(description="JSON Schema of the pipeline's input.")
    available: bool = Field(description="Whether this deployment accepts its jobs.")
    unavailable_reason: str | None = Field(
        None, description="Why not, and what to install or set (e.g. install conveyor[local] or set OPENAI_API_KEY).")


class PipelinesOut(BaseModel):
    pipelines: list[PipelineOut]


class FileForm(BaseModel):
    file: Any = Field(json_schema_extra={"type": "string", "format": "binary"},
                      description="Audio, video or an image; the kind is read from the content.")


class FileOut(BaseModel):
    """A stored file."""

    id: str
    filename: str
    content_type: str
    size: int
    url: str


class FileLinkOut(FileOut):
    link: str = Field(description="A URL that downloads the file without the Authorization header, for a while.")
    expires_in: int


class FilePath(BaseModel):
    file_id: str


class NotificationsQuery(BaseModel):
    mark_seen: bool = Field(True, description="Mark the listed jobs seen (false: only look).")


class NotificationsOut(BaseModel):
    notifications: list[JobOut] = Field(description="Your finished jobs not listed before, oldest first.")


class WebhookSecretOut(BaseModel):
    secret: str = Field(description="The `whsec_` secret that signs your webhooks (Standard Webhooks).")


class StatsOut(BaseModel):
    jobs: dict[str, Any] = Field(description="Your jobs: `total`, `by_status`, `by_pipeline`.")
    queues: dict[str, dict[str, int | None]] | None = Field(
        description="Per queue: messages `ready`, `delayed` and `in_progress`.")
    workers: dict[str, Any] = Field(description="Worker processes seen in the last `window_seconds`.")


class HealthOut(BaseModel):
    status: Literal["ok", "unavailable"]
    database: str
    broker: str
