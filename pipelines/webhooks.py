"""Telling users about finished jobs: signed webhook deliveries and the list of unseen finished jobs.

When a job with a ``webhook_url`` reaches a terminal status, the hook below puts a delivery
message in the finishing transaction's outbox; it is sent after the commit and delivered by
:func:`actors.webhooks.deliver_webhook`, never from inside a request.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from actors.errors import InvalidInput
from actors.fetch import check_url
from actors.webhooks import deliver_webhook, webhook_secret
from pipelines.db import transaction
from pipelines.dispatch import Outbox
from pipelines.hooks import on_job_finished
from pipelines.jobrow import JobRow
from pipelines.jobs import InvalidJobInput, serialize
from pipelines.models import TERMINAL_JOB, Job, JobStatus, utcnow

__all__ = ["check_webhook_url", "queue_delivery", "unseen_finished_jobs", "webhook_secret"]

#: Most notifications one call returns.
MAX_NOTIFICATIONS = 100


def check_webhook_url(url: str) -> str:
    """Vet a ``webhook_url`` at submission: https only, public addresses only.

    Raises:
      InvalidJobInput: naming the field ``webhook_url``.
    """
    try:
        check_url(url)
    except InvalidInput as exc:
        raise InvalidJobInput([{"field": "webhook_url", "message": str(exc)}]) from None
    return url


def delivery_id(job: JobRow) -> str:
    """Stable across retries of one delivery; a new attempt of the job gets a new id."""
    return f"msg_{job.id}_{job.attempt}_{job.status}"


@on_job_finished
def queue_delivery(session: Session, job: JobRow, outbox: Outbox) -> None:
    """Mark the finished job unseen, and queue its webhook if it asked for one."""
    job.notified_at = None  # a retried job that finishes again is news again
    if not job.webhook_url:
        return
    payload = serialize(job)
    if job.status == JobStatus.COMPLETED.value:
        # The engine writes the final progress just after the hooks run; send what the job will say.
        payload.update(progress=100.0, step="Done", eta_seconds=0)
    outbox.messages.append(deliver_webhook.message(job.webhook_url, delivery_id(job), job.user_id, payload))


def unseen_finished_jobs(*, user_id: str | None, mark_seen: bool = True,
                         limit: int = MAX_NOTIFICATIONS) -> list[dict[str, Any]]:
    """The user's finished jobs not listed here before, oldest first; listing marks them seen."""
    with transaction() as session:
        jobs = list(session.scalars(
            select(Job).where(Job.user_id == user_id, Job.status.in_(TERMINAL_JOB), Job.notified_at.is_(None))
            .order_by(Job.finished_at, Job.id).limit(max(1, min(MAX_NOTIFICATIONS, limit)))
        ))
        if mark_seen and jobs:
            session.execute(update(Job).where(Job.id.in_([j.id for j in jobs])).values(notified_at=utcnow()))
        return [serialize(j) for j in jobs]
