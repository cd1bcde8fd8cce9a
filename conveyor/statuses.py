"""The statuses of a job and of its stages, declared once for the store, the API, the client and the tests.

Standard library only, so the Python client can use them without the server's dependencies.
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    """A job's status; reads the same in the database, JSON and events."""

    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"


# A step's runs have statuses of their own (pipelines.store.models.RunStatus); the API shows this one.
class StageStatus(StrEnum):
    """A step's status in the job's stage summary."""

    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"


#: The statuses a job does not leave by itself (a retry may reopen a failed or canceled one).
TERMINAL: tuple[JobStatus, ...] = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED)
