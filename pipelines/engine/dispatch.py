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

from actors.broker.build import current_broker
from actors.broker.doorbell import DoorbellRedisBroker
from pipelines.definition import RetryPolicy
from pipelines.engine import notices
from pipelines.store.models import RunStatus, StageRun, utcnow

logger = logging.getLogger(__name__)

#: Message options the engine reads (see pipelines.engine.tracking).
RUN_OPTION, TOKEN_OPTION, JOB_OPTION = "conveyor_run", "conveyor_token", "conveyor_job"
ITEMS_OPTION, FIRST_STEP_OPTION, PIPELINE_OPTION = "conveyor_items", "conveyor_first", "conveyor_pipeline"
SIZE_OPTION = "conveyor_size"

#: Notice kinds, least to most significant; one notice per job and transaction carries the most significant.
_NOTICE_RANK = {"progress": 0, "stage": 1, "status": 2}


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
    items_total: int | None = None  #: the size of the fan-out this item belongs to
    first_step: bool = False  #: its claim also marks the job as started
    pipeline: str = ""  #: the job's pipeline: the worker plans the stage's end from its definition
    job_size: float | None = None  #: the job's size, when known: the worker scales the ETA by it


@dataclass
class Outbox:
    """What a transaction wants sent after it commits: stage messages and job notifications."""

    dispatches: list[Dispatch] = field(default_factory=list)
    notices: dict[str, str] = field(default_factory=dict)  #: job_id -> the most significant event kind
    messages: list[dramatiq.Message] = field(default_factory=list)  #: other messages (e.g. webhooks)

    def notify(self, job_id: str, kind: str) -> None:
        current = self.notices.get(job_id)
        if current is None or _NOTICE_RANK[kind] > _NOTICE_RANK[current]:
            self.notices[job_id] = kind

    def extend(self, other: Outbox) -> None:
        self.dispatches.extend(other.dispatches)
        self.messages.extend(other.messages)
        for job_id, kind in other.notices.items():
            self.notify(job_id, kind)


def queued_state(actor_name: str, delay: float | None = None) -> dict[str, Any]:
    """Column values of a run that is queued under a fresh token (its message sent after commit)."""
    now = utcnow()
    return {
        "status": RunStatus.QUEUED.value, "dispatch_token": str(uuid.uuid4()), "lease_until": None,
        "due_at": now + timedelta(seconds=delay or 0), "updated_at": now,
        "queue": current_broker().get_actor(actor_name).queue_name,
    }


def queue_run(run: StageRun, policy: RetryPolicy, outbox: Outbox, payload: Any, *, delay: float | None = None,
              items_total: int | None = None, pipeline: str = "", job_size: float | None = None) -> None:
    """Mark the loaded ``run`` queued under a fresh token and put its message (with ``payload``, the run's
    input) in the outbox."""
    assert run.actor is not None
    for column, value in queued_state(run.actor, delay).items():
        setattr(run, column, value)
    outbox.dispatches.append(
        Dispatch(run.actor, payload, run.job_id, run.id, run.dispatch_token or "", delay, policy.time_limit,
                 items_total, run.step == 0, pipeline, job_size)
    )


def send(outbox: Outbox) -> None:
    """Enqueue the outbox's messages and publish its notices. Call after the commit.

    A failure to enqueue is logged, not raised: the run stays queued in the database and
    the reconciler sends it again. On the doorbell broker the messages, one ring of each queue's
    doorbell and the notices travel together in one round trip.
    """
    broker = current_broker()
    if not isinstance(broker, DoorbellRedisBroker):
        _enqueue_all(broker, outbox)
        if outbox.notices:
            notices.publish_many(outbox.notices)
        return
    # One round trip: every message (Dramatiq's enqueue script), its doorbell ring and every notice.
    pipe = broker.client.pipeline(transaction=False)
    sent = []
    for message, delay in _messages(broker, outbox):
        at = len(pipe)
        sent.append((at, broker.enqueue_into(pipe, message, delay=delay), delay))
    broker.ring_into(pipe, {message.queue_name for _, message, _ in sent})
    notices.add_publishes(pipe, outbox.notices)
    failed = ConnectionError("not sent")
    try:
        replies = pipe.execute(raise_on_error=False)
    except Exception:  # the connection failed: send each on its own (the reconciler covers what still fails)
        logger.warning("Could not send %d message(s) and %d notice(s) together; sending each alone",
                       len(sent), len(outbox.notices))
        replies = [failed] * len(pipe)
    for at, message, delay in sent:
        if isinstance(replies[at], Exception):
            try:
                broker.enqueue(message, delay=delay)
            except Exception:
                logger.exception("Could not enqueue %s; a stage run's message is sent again by the reconciler",
                                 message.actor_name)
        else:
            broker.emit_after("enqueue", message, delay)


def _messages(broker: dramatiq.Broker, outbox: Outbox) -> list[tuple[dramatiq.Message, int | None]]:
    """The outbox's messages with their delays (ms): stage runs first, then the others."""
    messages: list[tuple[dramatiq.Message, int | None]] = []
    for d in outbox.dispatches:
        actor = broker.get_actor(d.actor_name)
        options: dict[str, Any] = {
            "time_limit": int(d.time_limit * 1000), "message_key": d.token, RUN_OPTION: d.run_id,
            TOKEN_OPTION: d.token, JOB_OPTION: d.job_id, ITEMS_OPTION: d.items_total, FIRST_STEP_OPTION: d.first_step,
            PIPELINE_OPTION: d.pipeline,
        }
        if d.job_size is not None:
            options[SIZE_OPTION] = d.job_size
        messages.append((actor.message_with_options(args=(d.payload,), **options),
                         int(d.delay * 1000) if d.delay else None))
    messages.extend((plain, None) for plain in outbox.messages)
    return messages


def _enqueue_all(broker: dramatiq.Broker, outbox: Outbox) -> None:
    for message, delay in _messages(broker, outbox):
        try:
            broker.enqueue(message, delay=delay)
        except Exception:
            logger.exception("Could not enqueue %s; a stage run's message is sent again by the reconciler",
                             message.actor_name)
