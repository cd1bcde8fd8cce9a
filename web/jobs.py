"""``/api/jobs``: start, read, list, cancel and retry jobs."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from flask import Response, current_app, request
from flask_openapi3 import APIBlueprint, Tag

from conveyor.job_shape import JobOut
from conveyor.statuses import TERMINAL, JobStatus
from pipelines.services.jobs import (
    InvalidJobInput,
    cancel_job,
    check_request,
    get_job,
    list_jobs,
    retry_job,
    start_job,
)
from web.auth import STREAM_GRANT_SECONDS, current_user_id, grant_for
from web.errors import more_field_errors
from web.ratelimit import check_job_rate
from web.schemas import (
    GrantOut,
    JobAcceptedOut,
    JobIn,
    JobListOut,
    JobPath,
    JobRequestHeaders,
    JobsQuery,
    ProblemOut,
)

#: The prefix of the list's query parameters that filter by a metadata key.
METADATA_PARAM = "metadata."
SECURITY: list[dict[str, list[str]]] = [{"bearer": []}]
bp = APIBlueprint("jobs", __name__, url_prefix="/api/jobs", abp_tags=[Tag(name="jobs")], abp_security=SECURITY,
                  abp_responses={401: ProblemOut})


def poll_after(job: dict[str, Any]) -> int:
    """Seconds a poller should wait before asking again about an unfinished job."""
    eta = job.get("eta_seconds")
    if job["status"] == JobStatus.PENDING or eta is None:
        return 2
    return 1 if eta < 10 else (2 if eta < 120 else 5)


def job_response(job: dict[str, Any], status: int = 200, *, conditional: bool = False) -> Response:
    """The job as JSON, with an ETag, and Retry-After while it is unfinished.

    ``conditional``: answer 304 with no body when the request's If-None-Match names this ETag
    (the weak comparison RFC 9110 asks of If-None-Match).
    """
    body = json.dumps(job, separators=(",", ":"))
    etag = hashlib.sha1(body.encode()).hexdigest()[:20]
    if conditional and request.if_none_match.contains_weak(etag):
        response = current_app.response_class(status=304)
    else:
        response = current_app.response_class(body, status=status, mimetype="application/json")
    response.set_etag(etag)
    response.headers["Cache-Control"] = "private, no-cache"
    if job["status"] not in TERMINAL:
        response.headers["Retry-After"] = str(poll_after(job))
    return response


@bp.post("", responses={202: JobAcceptedOut, 400: ProblemOut, 413: ProblemOut, 422: ProblemOut, 429: ProblemOut},
         summary="Start a job",
         description="Answers at once with 202 and the job; `Location` names it and `Retry-After` says when to "
                     "poll. An `Idempotency-Key` header makes retries of this request safe: the same key and body "
                     "return the same job, the same key with another body 422.")
def create_job(body: JobIn, header: JobRequestHeaders) -> Response:
    key = header.idempotency_key or None
    user_id = current_user_id()
    # Every request counts, refused ones too (a flood of bad ones is still a flood), except the
    # repeat of an accepted Idempotency-Key: it never counts and never gets 429, even when sent
    # concurrently with the first (the first counts once its job row is written; repeats wait for
    # that row and replay it).
    if key is None:
        check_job_rate(user_id)
        admit = None
    else:
        def admit() -> None:
            check_job_rate(user_id)
    try:
        job = start_job(pipeline=body.pipeline, input=body.input, user_id=user_id, project_id=body.project_id,
                        webhook_url=body.webhook_url, idempotency_key=key, admit=admit, metadata=body.metadata)
    except InvalidJobInput:
        if key is not None:
            check_job_rate(user_id)  # an invalid request counts, with a key or without
        raise
    response = job_response(job, 202)
    response.headers["Location"] = f"/api/jobs/{job['id']}"
    response.headers.setdefault("Retry-After", "1")
    return response


def _job_request_errors(body: Any) -> list[dict[str, str]]:
    """The pipeline's, input's and webhook's errors of a job request whose other fields failed the model."""
    if not isinstance(body, dict) or not isinstance(body.get("pipeline"), str):
        return []
    webhook_url = body.get("webhook_url") if isinstance(body.get("webhook_url"), str) else None
    try:
        check_request(body["pipeline"], body.get("input", {}), webhook_url, body.get("metadata"))
    except InvalidJobInput as exc:
        return exc.errors
    return []


more_field_errors[f"{bp.name}.{create_job.__name__}"] = _job_request_errors


@bp.get("", responses={200: JobListOut, 422: ProblemOut}, summary="List your jobs, newest first",
        description="`metadata.<key>=<value>` (repeatable, one per key) lists only jobs whose `metadata` holds "
                    "that string value at that top-level key, e.g. `?metadata.person_name=Ada`.")
def list_jobs_view(query: JobsQuery) -> dict[str, Any]:
    metadata = {name.removeprefix(METADATA_PARAM): value for name, value in request.args.items()
                if name.startswith(METADATA_PARAM)}
    jobs, cursor = list_jobs(user_id=current_user_id(), pipeline=query.pipeline, status=query.status,
                             project_id=query.project_id, limit=query.limit, cursor=query.cursor, metadata=metadata)
    return {"jobs": jobs, "next_cursor": cursor}


@bp.get("/<job_id>", responses={200: JobOut, 304: None, 404: ProblemOut}, summary="Read a job",
        description="One indexed read. Sends an `ETag` (304 for a matching `If-None-Match`) and, while the job "
                    "is unfinished, `Retry-After`: the seconds to wait before polling again.")
def read_job(path: JobPath) -> Response:
    return job_response(get_job(path.job_id, user_id=current_user_id()), conditional=True)


@bp.post("/<job_id>/cancel", responses={202: JobOut, 404: ProblemOut, 409: ProblemOut}, summary="Cancel a job")
def cancel_job_view(path: JobPath) -> Response:
    return job_response(cancel_job(path.job_id, user_id=current_user_id()), 202)


@bp.post("/<job_id>/retry", responses={202: JobOut, 404: ProblemOut, 409: ProblemOut},
         summary="Retry a failed or canceled job from the stage that did not finish")
def retry_job_view(path: JobPath) -> Response:
    return job_response(retry_job(path.job_id, user_id=current_user_id()), 202)


@bp.post("/<job_id>/events/grant", responses={201: GrantOut, 404: ProblemOut},
         summary="A short-lived URL of the job's event stream, for EventSource",
         description="Browsers' EventSource cannot send an Authorization header. This answers a URL with a signed "
                     f"`access` parameter that opens this job's event stream for you, usable for "
                     f"{STREAM_GRANT_SECONDS} s.")
def grant_events(path: JobPath) -> tuple[dict[str, Any], int]:
    user_id = current_user_id()
    get_job(path.job_id, user_id=user_id)  # 404 for a job that is not yours
    grant = grant_for(f"events:{path.job_id}", user_id=user_id, path=f"/api/jobs/{path.job_id}/events",
                      seconds=STREAM_GRANT_SECONDS)
    return {"url": grant.url, "expires_in": grant.expires_in}, 201
