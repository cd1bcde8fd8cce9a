"""Callbacks run when a job reaches a terminal status, inside the transaction that finished it.

A hook gets the job as a :class:`pipelines.jobrow.JobRow` (read and assign fields as on ``Job``;
assignments are saved with that transaction). It may add stage-free messages to the outbox (for
example a webhook delivery), which are then sent after the commit like every other message.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.orm import Session

from pipelines.dispatch import Outbox
from pipelines.jobrow import JobRow

JobFinishedHook = Callable[[Session, JobRow, Outbox], None]
_job_finished: list[JobFinishedHook] = []


def on_job_finished(hook: JobFinishedHook) -> JobFinishedHook:
    """Register ``hook`` (usable as a decorator)."""
    if hook not in _job_finished:
        _job_finished.append(hook)
    return hook


def job_finished(session: Session, job: JobRow, outbox: Outbox) -> None:
    for hook in _job_finished:
        hook(session, job, outbox)
