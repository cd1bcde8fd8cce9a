"""The ``clock`` process: the reconciler on a timer, and the clean-up of expired jobs and files.

One clock process per deployment is enough (every worker also reconciles); running two is
harmless, since every step is a conditional update or an idempotent delete.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select

from actors.files.storage import get_storage, job_folder
from conveyor.config import settings
from conveyor.errors import StorageError
from conveyor.statuses import TERMINAL
from pipelines.engine.reconciler import ReconcileReport, reconcile_once
from pipelines.store.db import transaction
from pipelines.store.models import Job, StoredFile, utcnow

logger = logging.getLogger(__name__)

#: s between two clean-up passes.
CLEANUP_INTERVAL = 3600.0
#: Most jobs one clean-up pass deletes.
CLEANUP_BATCH = 500


@dataclass
class CleanupReport:
    jobs: int = 0
    files: int = 0

    def __str__(self) -> str:
        return f"deleted {self.jobs} expired job(s) and {self.files} file(s)"


def reconcile() -> ReconcileReport:
    """One reconciler pass, as the clock runs every few seconds (``conveyor reconcile``)."""
    return reconcile_once()


def cleanup_expired(*, retention_days: int | None = None) -> CleanupReport:
    """Delete finished jobs older than the retention, their files, and uploads as old."""
    days = settings().retention_days if retention_days is None else retention_days
    cutoff = utcnow() - timedelta(days=days)
    report = CleanupReport()
    with transaction() as session:
        job_ids = list(session.scalars(
            select(Job.id).where(Job.status.in_(TERMINAL), Job.finished_at < cutoff).limit(CLEANUP_BATCH)))
        files = list(session.scalars(select(StoredFile).where(
            (StoredFile.job_id.in_(job_ids)) | ((StoredFile.job_id.is_(None)) & (StoredFile.created_at < cutoff)))))
        for stored in files:
            try:
                get_storage().delete(stored.key)
            except StorageError:
                logger.warning("Could not delete stored file %s", stored.key)
            session.delete(stored)
        # Intermediate files (a lecture's chunk WAVs, transcripts, scene clips) have no row: the job's folder
        # goes. A job whose folder could not be emptied stays for the next pass, so no file is forgotten.
        folders, cleaned = 0, []
        for job_id in job_ids:
            try:
                folders += get_storage().delete_folder(job_folder(job_id))
                cleaned.append(job_id)
            except Exception:
                logger.warning("Could not delete the stored files of job %s; will try again", job_id, exc_info=True)
        if cleaned:
            session.execute(delete(Job).where(Job.id.in_(cleaned)))
        report.jobs, report.files = len(cleaned), len(files) + folders
    if report.jobs or report.files:
        logger.info("Clean-up: %s", report)
    return report


def run_clock(stop: threading.Event, *, reconcile_interval: float | None = None) -> None:
    """Reconcile every few seconds and clean up every hour, until ``stop`` is set."""
    interval = reconcile_interval or settings().reconcile_interval_seconds
    next_cleanup = 0.0
    elapsed = 0.0
    while not stop.wait(interval):
        elapsed += interval
        try:
            reconcile_once()
            if elapsed >= next_cleanup:
                cleanup_expired()
                next_cleanup = elapsed + CLEANUP_INTERVAL
        except Exception:
            logger.warning("Clock pass failed; trying again", exc_info=True)
