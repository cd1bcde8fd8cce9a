"""Operations: ``/api/stats``, ``/api/notifications``, ``/api/webhooks/secret``, ``/healthz`` and ``/metrics``."""

from __future__ import annotations

import hmac
from typing import Any

from flask import Response, abort, request
from flask_openapi3 import APIBlueprint, Tag

from conveyor.config import settings
from pipelines.services.metrics import render_metrics
from pipelines.services.stats import health, stats
from pipelines.services.webhooks import unseen_finished_jobs, webhook_secret
from web.auth import current_user_id
from web.schemas import (
    HealthOut,
    NotificationsOut,
    NotificationsQuery,
    ProblemOut,
    StatsOut,
    WebhookSecretOut,
)

bp = APIBlueprint("ops", __name__, url_prefix="/api", abp_tags=[Tag(name="operations")],
                  abp_security=[{"bearer": []}], abp_responses={401: ProblemOut})
health_bp = APIBlueprint("health", __name__, abp_tags=[Tag(name="operations")])


@bp.get("/stats", responses={200: StatsOut}, summary="Job counts, queue depths and workers seen recently",
        description="Job counts are your own; queues and workers are the whole service's.")
def read_stats() -> dict[str, Any]:
    return stats(user_id=current_user_id())


@bp.get("/notifications", responses={200: NotificationsOut}, summary="Your finished jobs not seen yet",
        description="Lists your jobs that finished since they were last listed here, oldest first, and marks "
                    "them seen (unless `mark_seen=false`). A job retried and finished again is listed again.")
def read_notifications(query: NotificationsQuery) -> dict[str, Any]:
    return {"notifications": unseen_finished_jobs(user_id=current_user_id(), mark_seen=query.mark_seen)}


@bp.get("/webhooks/secret", responses={200: WebhookSecretOut}, summary="The secret that signs your webhooks",
        description="Webhooks carry `webhook-id`, `webhook-timestamp` and `webhook-signature` headers (Standard "
                    "Webhooks, HMAC-SHA256); verify them with this secret, e.g. `standardwebhooks.Webhook(secret)"
                    ".verify(body, headers)`.")
def read_webhook_secret() -> dict[str, Any]:
    return {"secret": webhook_secret(current_user_id())}


@health_bp.get("/healthz", responses={200: HealthOut, 503: HealthOut}, summary="Database and broker health")
def healthz() -> tuple[dict[str, Any], int]:
    report = health()
    return report, 200 if report["status"] == "ok" else 503


@health_bp.get("/metrics", summary="Prometheus metrics: jobs by status, stage durations, queue lag and depth",
               doc_ui=False)
def metrics() -> Response:
    """Aggregates only, no user data; set CONVEYOR_METRICS_TOKEN to require it as a bearer token."""
    expected = settings().metrics_token
    if expected:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), expected.encode()):
            abort(401)
    body, content_type = render_metrics()
    return Response(body, content_type=content_type)
