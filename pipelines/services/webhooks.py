"""Telling users about finished jobs: signed webhook deliveries and the list of unseen finished jobs.

When a job with a ``webhook_url`` reaches a terminal status, :func:`queue_delivery` (a finished-job
hook installed by ``pipelines.worker.setup``) puts a delivery
message in the finishing transaction's outbox; it is sent after the commit and delivered by
:func:`actors.stages.webhooks.deliver_webhook`, never from inside a request. Each attempt's outcome is
written on the job (its ``webhook`` field) by :class:`WebhookOutcomes`, so users see whether
their webhook arrived without reading the worker's logs.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from actors.stages.webhooks import deliver_webhook, webhook_secret
from conveyor.statuses import TERMINAL, JobStatus
from pipelines.engine.dispatch import Outbox
from pipelines.services.jobs import serialize
from pipelines.store.db import transaction
from pipelines.store.jobrow import JobRow, lock_job
from pipelines.store.models import Job, iso, utcnow

__all__ = ["WebhookOutcomes", "queue_delivery", "record_delivery", "unseen_finished_jobs", "webhook_secret"]

logger = logging.getLogger(__name__)

#: Most notifications one call returns.
MAX_NOTIFICATIONS = 100


def delivery_id(job: JobRow) -> str:
    """Stable across retries of one delivery; a new attempt of the job gets a new id."""
    return f"msg_{job.id}_{job.attempt}_{job.status}"


def queue_delivery(session: Session, job: JobRow, outbox: Outbox) -> None:
    """Mark the finished job unseen, and queue its webhook if it asked for one."""
    job.notified_at = None  # a retried job that finishes again is news again
    if not job.webhook_url:
        return
    delivery = delivery_id(job)
    job.webhook = {"id": delivery, "status": "pending", "attempts": 0, "response": None, "error": None,
                   "updated_at": iso(utcnow())}
    payload = serialize(job)
    if job.status == JobStatus.COMPLETED.value:
        # The engine writes the final progress just after the hooks run; send what the job will say.
        payload.update(progress=100.0, step="Done", eta_seconds=0)
    outbox.messages.append(deliver_webhook.message(job.webhook_url, delivery, job.user_id, payload))


def record_delivery(job_id: str, delivery: str, attempts: int, outcome: dict[str, Any]) -> None:
    """Write one attempt's outcome on the job, unless the job has since moved on.

    A job retried and finished again has a new delivery; an attempt recorded late (a worker slow
    to write) must not overwrite a later one.
    """
    with transaction() as session:
        job = lock_job(session, job_id)
        current = job.webhook if job is not None else None
        if job is None or not current or current.get("id") != delivery or current.get("attempts", 0) > attempts:
            return
        job.webhook = {**current, "status": outcome["status"], "attempts": attempts,
                       "response": outcome.get("response"), "error": outcome.get("error"),
                       "updated_at": iso(utcnow())}


class WebhookOutcomes(dramatiq.Middleware):
    """Records each webhook delivery attempt on its job: delivered, retrying or failed.

    Installed ahead of Retries in the broker's list, so its after-hook runs once Retries has
    decided whether another attempt follows (``message.failed``). The attempt's number is taken
    before the message runs, because Retries counts some failures and not others.
    """

    def __init__(self) -> None:
        self._attempt = threading.local()  # a worker thread runs one message at a time

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        if message.actor_name == deliver_webhook.actor_name:
            self._attempt.number = message.options.get("retries", 0) + 1

    def after_process_message(self, broker: dramatiq.Broker, message: MessageProxy, *,
                              result: Any = None, exception: BaseException | None = None) -> None:
        if message.actor_name != deliver_webhook.actor_name:
            return
        _, delivery, _, payload = message.args
        if exception is None:
            outcome: dict[str, Any] = {"status": "delivered", "response": None, "error": None}
        else:
            outcome = {"status": "failed" if message.failed else "retrying",
                       "response": getattr(exception, "response", None), "error": str(exception)}
        attempt = getattr(self._attempt, "number", message.options.get("retries", 0))
        try:
            record_delivery(payload["id"], delivery, attempt, outcome)
        except SQLAlchemyError as exc:  # the delivery itself is done; only its record is lost
            logger.warning("Could not record webhook %s attempt %s: %s", delivery, attempt, exc)


def unseen_finished_jobs(*, user_id: str | None, mark_seen: bool = True,
                         limit: int = MAX_NOTIFICATIONS) -> list[dict[str, Any]]:
    """The user's finished jobs not listed here before, oldest first; listing marks them seen."""
    with transaction() as session:
        jobs = list(session.scalars(
            select(Job).where(Job.user_id == user_id, Job.status.in_(TERMINAL), Job.notified_at.is_(None))
            .order_by(Job.finished_at, Job.id).limit(max(1, min(MAX_NOTIFICATIONS, limit)))
        ))
        if mark_seen and jobs:
            session.execute(update(Job).where(Job.id.in_([j.id for j in jobs])).values(notified_at=utcnow()))
        return [serialize(j) for j in jobs]
