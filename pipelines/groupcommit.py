"""The ends of a job's stages that come together are recorded in one transaction (group commit).

Recording a stage's end locks its job row, where the step's counts and the job's progress live,
so the items of a fan-out (or the branches of a parallel step) finishing at once would queue on
that lock with a transaction each. Here the first thread to record an end of a job leads: while
it waits for the row lock, other ends of the same job join its batch, and it records them all in
one transaction. The others wait for that commit, so no stage's message is acknowledged before
its end is recorded. A lone end (a chain's stage) is recorded at once, in a transaction of its own.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from pipelines.db import transaction
from pipelines.dispatch import Outbox, send
from pipelines.jobrow import lock_job

logger = logging.getLogger(__name__)

#: Records one stage's end in the given transaction; returns what to send after the commit.
Record = Callable[[Session], Outbox]


@dataclass
class _Batch:
    records: list[Record] = field(default_factory=list)
    recorded: threading.Event = field(default_factory=threading.Event)


class GroupCommit:
    """Per process: batches the records of each job's stage ends."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._open: dict[str, _Batch] = {}

    def record(self, job_id: str, record: Record) -> None:
        """Run ``record`` in a transaction shared with other ends of ``job_id`` that come now; returns
        once it has committed (or, if it could not, once that has been logged).

        Raises only when a batch of this record alone could not be written.
        """
        with self._mutex:
            batch = self._open.get(job_id)
            leads = batch is None
            if batch is None:
                batch = self._open[job_id] = _Batch()
            batch.records.append(record)
        if not leads:
            batch.recorded.wait()
            return
        try:
            self._lead(job_id, batch)
        finally:
            self._close(job_id, batch)
            batch.recorded.set()

    def _close(self, job_id: str, batch: _Batch) -> list[Record]:
        """Stop ``batch`` taking records (a later end starts the next batch); returns its records."""
        with self._mutex:
            if self._open.get(job_id) is batch:
                del self._open[job_id]
            return list(batch.records)

    def _lead(self, job_id: str, batch: _Batch) -> None:
        try:
            with transaction() as session:
                lock_job(session, job_id)  # ends that come while this waits join the batch
                outbox = Outbox()
                for record in self._close(job_id, batch):
                    outbox.extend(record(session))
        except Exception:
            records = self._close(job_id, batch)
            if len(records) <= 1:
                raise
            # One failing record must not cost the others theirs: record each alone.
            logger.warning("Could not record %d stage ends of job %s together; recording each alone",
                           len(records), job_id, exc_info=True)
            outbox = self._each_alone(job_id, records)
        send(outbox)

    @staticmethod
    def _each_alone(job_id: str, records: list[Record]) -> Outbox:
        outbox = Outbox()
        for record in records:
            try:
                with transaction() as session:
                    recorded = record(session)
                outbox.extend(recorded)
            except Exception:
                # The run stays 'processing'; its lease lapses and the reconciler runs it again.
                logger.exception("Could not record the end of a stage of job %s", job_id)
        return outbox
