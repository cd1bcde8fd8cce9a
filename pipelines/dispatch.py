"""Messages for stage runs: built inside a transaction, sent only after it commits.

The database row says a run is ``queued`` with a fresh ``dispatch_token``; the message
carries that token, and only a message whose token still matches may run the stage. So
a duplicated, redelivered or superseded message is a no-op, and a run whose message was
lost can be sent again (with a new token) by the reconciler.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import dramatiq

from pipelines import events
from pipelines.definition import RetryPolicy
from pipelines.models import RunStatus, StageRun, utcnow

logger = logging.getLogger(__name__)

#: Message options the engine reads (see pipelines.tracking).
RUN_OPTION, TOKEN_OPTION, JOB_OPTION = "conveyor_run", "conveyor_token", "conveyor_job"


@dataclass(frozen=True)
class Dispatch:
    """A stage message to send once the transaction that queued its run has committed."""

    actor_name: str
    payload: Any
    job_id: str
    run_id: int
    token: str
    delay: float | None  #: s
    time_limit: float  #: s


@dataclass
class Outbox:
    """What a transaction wants sent after it commits: stage messages and job notifications."""

    dispatches: list[Dispatch] = field(default_factory=list)
    notices: list[tuple[str, str]] = field(default_factory=list)  #: (job_id, event kind)
    messages: list[dramatiq.Message] = field(default_factory=list)  #: other messages (e.g. webhooks)

    def notify(self, job_id: str, kind: str) -> None:
        if (job_id, kind) not in self.notices:
            self.notices.append((job_id, kind))

    def extend(self, other: Outbox) -> None:
        self.dispatches.extend(other.dispatches)
        self.messages.extend(other.messages)
        for notice in other.notices:
            self.notify(*notice)


def queue_run(run: StageRun, policy: RetryPolicy, outbox: Outbox, *, delay: float | None = None) -> None:
    """Mark ``run`` queued under a fresh token and put its message in the outbox."""
    run.status = RunStatus.QUEUED.value
    run.dispatch_token = str(uuid.uuid4())
    run.lease_until = None
    run.due_at = utcnow() + timedelta(seconds=delay or 0)
    run.updated_at = utcnow()
    assert run.actor is not None
    run.queue = dramatiq.get_broker().get_actor(run.actor).queue_name
    outbox.dispatches.append(
        Dispatch(run.actor, run.input, run.job_id, run.id, run.dispatch_token, delay, policy.time_limit)
    )


def send(outbox: Outbox) -> None:
    """Enqueue the outbox's messages and publish its notices. Call after the commit.

    A failure to enqueue is logged, not raised: the run stays queued in the database and
    the reconciler sends it again.
    """
    broker = dramatiq.get_broker()
    for d in outbox.dispatches:
        actor = broker.get_actor(d.actor_name)
        message = actor.message_with_options(
            args=(d.payload,),
            time_limit=int(d.time_limit * 1000),
            message_key=d.token,
            **{RUN_OPTION: d.run_id, TOKEN_OPTION: d.token, JOB_OPTION: d.job_id},
        )
        try:
            broker.enqueue(message, delay=int(d.delay * 1000) if d.delay else None)
        except Exception:
            logger.exception("Could not enqueue stage run %s; the reconciler will send it again", d.run_id)
    for plain in outbox.messages:
        try:
            broker.enqueue(plain)
        except Exception:
            logger.exception("Could not enqueue %s", plain.actor_name)
    for job_id, kind in outbox.notices:
        events.publish(job_id, kind)
