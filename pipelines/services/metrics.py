"""Prometheus metrics read from the job store and the broker at scrape time.

Reading shared state (rather than counting in each process) gives every web process the same
answer: jobs by status, recent stage durations, how long queued stages have waited, queue depths.
The worker's own message metrics come from Dramatiq's Prometheus middleware
(``CONVEYOR_WORKER_METRICS=1``).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sqlalchemy import func, select

from pipelines.store.db import transaction
from pipelines.store.models import STEP_ROW, Job, RunStatus, StageRun, utcnow

#: How many recent completed steps feed the duration gauge.
DURATION_WINDOW = 1000


class JobStoreCollector:
    """Collects Conveyor's gauges on each scrape."""

    def collect(self) -> Iterator[Metric]:
        jobs = GaugeMetricFamily("conveyor_jobs", "Jobs by pipeline and status", labels=["pipeline", "status"])
        durations = GaugeMetricFamily("conveyor_stage_duration_seconds",
                                      "Mean duration of recently completed steps", labels=["pipeline", "stage"])
        lag = GaugeMetricFamily("conveyor_queue_lag_seconds", "How long the oldest due queued stage has waited")
        with transaction() as session:
            for pipeline, status, count in session.execute(
                    select(Job.pipeline, Job.status, func.count()).group_by(Job.pipeline, Job.status)):
                jobs.add_metric([pipeline, status], count)
            recent = (select(Job.pipeline, StageRun.name, StageRun.duration)
                      .join(Job, Job.id == StageRun.job_id)
                      .where(StageRun.item == STEP_ROW, StageRun.status == RunStatus.COMPLETED.value,
                             StageRun.duration.is_not(None))
                      .order_by(StageRun.id.desc()).limit(DURATION_WINDOW).subquery())
            for pipeline, stage, mean in session.execute(
                    select(recent.c.pipeline, recent.c.name, func.avg(recent.c.duration))
                    .group_by(recent.c.pipeline, recent.c.name)):
                durations.add_metric([pipeline, stage], float(mean))
            now = utcnow()
            oldest = session.scalar(select(func.min(StageRun.due_at)).where(
                StageRun.status == RunStatus.QUEUED.value, StageRun.due_at <= now))
            lag.add_metric([], (now - oldest).total_seconds() if oldest else 0.0)
        yield jobs
        yield durations
        yield lag
        from pipelines.services.stats import queue_depths

        depth = GaugeMetricFamily("conveyor_queue_messages", "Messages in the broker's queues",
                                  labels=["queue", "kind"])
        for queue, counts in queue_depths().items():
            for kind, count in counts.items():
                if count is not None:
                    depth.add_metric([queue, kind], count)
        yield depth


def render_metrics() -> tuple[bytes, str]:
    """The metrics page and its content type."""
    registry = CollectorRegistry()
    registry.register(JobStoreCollector())
    return generate_latest(registry), CONTENT_TYPE_LATEST
