"""The ends of a job's stages that come together are recorded in one transaction (group commit).

Recording a stage's end locks its job row, where the step's counts and the job's progress live,
so the items of a fan-out (or the branches of a parallel step) finishing at once would queue on
that lock with a transaction each. Here the first thread to record an end of a job leads: while
it waits for the row lock, other ends of the same job join its batch, and it records them all in
one transaction and sends what they queued. The others wait for that commit, so no stage's
message is acknowledged before its end is recorded. If a batch of several ends cannot be written,
every member is told so and records its end alone: one bad end costs the others nothing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from pipelines.engine.dispatch import Outbox, send
from pipelines.store.db import transaction
from pipelines.store.jobrow import lock_job

logger = logging.getLogger(__name__)

#: Records one stage's end in the given transaction; returns what to send after the commit.
Record = Callable[[Session], Outbox]


@dataclass
class _Batch:
    records: list[Record] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    failed: bool = False


class GroupCommit:
    """Per process: batches the records of each job's stage ends."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._open: dict[str, _Batch] = {}

    def record(self, job_id: str, record: Record) -> bool:
        """Run ``record`` in a transaction shared with other ends of ``job_id`` that come now.

        True once that has committed and what it queued was sent; False if a batch with other ends
        could not be written, and the caller must record its end alone. A batch of this end alone
        raises what stopped it (recording it alone again would only repeat it).
        """
        with self._mutex:
            batch = self._open.get(job_id)
            leads = batch is None
            if batch is None:
                batch = self._open[job_id] = _Batch()
            batch.records.append(record)
        if not leads:
            batch.done.wait()
            return not batch.failed
        try:
            self._write(job_id, batch)
            return True
        except Exception as error:
            batch.failed = True
            if len(batch.records) == 1:
                raise
            logger.warning("Could not record %d stage ends of job %s together (%s); each records alone",
                           len(batch.records), job_id, type(error).__name__)
            return False
        finally:
            self._close(job_id, batch)
            batch.done.set()

    def _close(self, job_id: str, batch: _Batch) -> list[Record]:
        """Stop ``batch`` taking records (a later end starts the next batch); returns its records."""
        with self._mutex:
            if self._open.get(job_id) is batch:
                del self._open[job_id]
            return list(batch.records)

    def _write(self, job_id: str, batch: _Batch) -> None:
        with transaction() as session:
            lock_job(session, job_id)  # ends that come while this waits join the batch
            outbox = Outbox()
            for record in self._close(job_id, batch):
                outbox.extend(record(session))
        send(outbox)
