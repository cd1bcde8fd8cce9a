"""The job object of the REST contract, declared once.

The store keeps the stage summary in the job row in this shape, :func:`pipelines.services.jobs.serialize`
maps a row to :class:`JobOut`, the API answers with it and its OpenAPI description is generated
from it. The statuses live in :mod:`conveyor.statuses`, which the client imports without pydantic.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired

from pydantic import BaseModel, Field
from typing_extensions import TypedDict  # pydantic needs this one on Python 3.11, not typing's

from conveyor.statuses import JobStatus, StageStatus


class ItemCounts(TypedDict):
    """The items of a fan-out or parallel step."""

    total: int
    completed: int
    failed: int


# A TypedDict, not a model: the hand-off path (pipelines.engine.sqlitestore, and the same in PL/pgSQL) changes
# these entries at every stage's end as plain JSON; a TypedDict types them at no cost there.
class StageOut(TypedDict):
    """One step of the job: its status, progress (0–100), attempts and, for a step with items, their counts."""

    name: str
    status: StageStatus
    progress: float  #: 0–100
    attempts: int
    items: NotRequired[ItemCounts | None]  #: only for a step with items
    started_at: NotRequired[str | None]
    finished_at: NotRequired[str | None]
    error: NotRequired[dict[str, Any] | None]  #: ``{"code", "message", …}`` of a failed step


class WebhookDeliveryOut(BaseModel):
    """Where the finished job's webhook delivery stands."""

    id: str = Field(description="The `webhook-id` header the receiver got.")
    status: Literal["pending", "retrying", "delivered", "failed"]
    attempts: int = Field(description="Attempts made so far.")
    response: int | None = Field(description="The HTTP status of the last failed attempt, if it was answered.")
    error: str | None = Field(description="Why the last attempt failed.")
    updated_at: str


class WarningOut(BaseModel):
    """Something a stage could not do as asked; the job went on without it."""

    code: str = Field(description="e.g. `no_face_found`, `weak_subject_mask`, `storyboard_fallback`.")
    message: str = Field(description="What happened and what was done instead, for people.")
    stage: str = Field(description="The stage that said so.")


class JobOut(BaseModel):
    """A job."""

    id: str
    pipeline: str
    status: JobStatus
    progress: float = Field(description="0–100; never decreases during one attempt.")
    step: str | None = Field(description="What the job is doing, for people.")
    eta_seconds: float | None
    stages: list[StageOut]
    input: dict[str, Any] | None
    result: dict[str, Any] | None
    errors: list[dict[str, Any]] = Field(description="Item failures the pipeline tolerated.")
    error: dict[str, Any] | None = Field(description="`{stage, code, message}` of a failed job.")
    warnings: list[WarningOut] = Field(
        default_factory=list, description="What a stage could not do as asked (a photo with no face found); "
                                          "the job went on, and may still complete.")
    metadata: Any = Field(None, description="The request's `metadata`, unchanged; null when none was given.")
    project_id: str | None
    attempt: int
    webhook: WebhookDeliveryOut | None = Field(
        description="The webhook delivery of a finished job that named a `webhook_url`; null otherwise.")
    created_at: str
    started_at: str | None
    finished_at: str | None
    updated_at: str
