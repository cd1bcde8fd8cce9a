"""Every error as ``application/problem+json`` (RFC 9457): ``{"type", "title", "status", "detail", "errors"?}``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from flask import Flask, Response, current_app, jsonify, request
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from conveyor.errors import (
    FileTooLarge,
    IdempotencyConflict,
    InvalidJobInput,
    JobConflict,
    JobNotFound,
    StoredFileNotFound,
    UnsupportedFile,
)

logger = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


class Problem(Exception):
    """Raised by a view to answer with a problem document."""

    def __init__(self, status: int, detail: str | None = None, *, errors: list[dict[str, str]] | None = None,
                 headers: dict[str, str] | None = None, limit: str | None = None) -> None:
        super().__init__(detail or str(status))
        self.status, self.detail, self.errors, self.headers, self.limit = status, detail, errors, headers, limit


def problem(status: int, detail: str | None = None, *, errors: list[dict[str, str]] | None = None,
            headers: dict[str, str] | None = None, limit: str | None = None) -> Response:
    """A problem+json response.

    Its ``type`` is ``about:blank``, so its ``title`` is the status phrase (RFC 9457); what went
    wrong is told by ``detail`` and, for fields, ``errors``.
    """
    body: dict[str, Any] = {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status}
    if detail:
        body["detail"] = detail
    if errors is not None:
        body["errors"] = errors
    if limit is not None:
        body["limit"] = limit
    response = jsonify(body)
    response.status_code = status
    response.mimetype = PROBLEM_JSON
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


#: Per endpoint: the field errors of the request's own checks (``body`` being its JSON), reported
#: along with its model's, so that one answer names every bad field.
more_field_errors: dict[str, Callable[[Any], list[dict[str, str]]]] = {}


def validation_failed(exc: ValidationError) -> Response:
    """flask-openapi3's callback for a request that failed its model: 400 for a body that is not JSON."""
    if request.method in ("POST", "PUT", "PATCH") and request.mimetype != "multipart/form-data" \
            and request.get_json(silent=True) is None:
        return problem(400, "The request body must be valid JSON sent as application/json.")
    errors = [{"field": ".".join(str(part) for part in e["loc"]) or "body", "message": e["msg"]}
              for e in exc.errors()]
    more = more_field_errors.get(request.endpoint or "")
    if more is not None:
        named = {e["field"] for e in errors}
        errors += [e for e in more(request.get_json(silent=True)) if e["field"] not in named]
    return problem(422, "The request has invalid fields.", errors=errors)


def _http_error(exc: HTTPException) -> Response:
    if isinstance(exc.response, Response) and exc.response.mimetype == PROBLEM_JSON:
        return exc.response  # already a problem (e.g. from validation_failed through abort)
    status = exc.code or 500
    headers = {}
    allowed = getattr(exc, "valid_methods", None)
    if status == 405 and allowed:
        headers["Allow"] = ", ".join(allowed)
    if status == 413:
        limit = request.max_content_length or current_app.config.get("MAX_UPLOAD_BYTES")
        return problem(413, f"The request body is larger than the limit of {limit} bytes.", headers=headers,
                       limit="max_json_bytes" if request.endpoint != "files.upload_file" else "max_upload_bytes")
    return problem(status, exc.description if status != 404 else "No such resource.", headers=headers)


def _unexpected(exc: Exception) -> Response:
    logger.exception("Unhandled error on %s %s", request.method, request.path)
    detail = f"{type(exc).__name__}: {exc}" if current_app.debug else "The server could not handle the request."
    return problem(500, detail)


def register_error_handlers(app: Flask) -> None:
    """Map HTTP errors and the engine's errors to problem documents."""
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Problem, lambda e: problem(e.status, e.detail, errors=e.errors,
                                                          headers=e.headers, limit=e.limit))
    app.register_error_handler(JobNotFound, lambda e: problem(404, "No such job."))
    app.register_error_handler(StoredFileNotFound, lambda e: problem(404, "No such file."))
    app.register_error_handler(JobConflict, lambda e: problem(409, str(e)))
    app.register_error_handler(
        InvalidJobInput, lambda e: problem(422, "The job request has invalid fields.",
                                           errors=e.errors))
    app.register_error_handler(
        IdempotencyConflict,
        lambda e: problem(422, str(e),
                          errors=[{"field": "Idempotency-Key", "message": str(e)}]))
    app.register_error_handler(FileTooLarge, lambda e: problem(413, str(e), limit=e.name))
    app.register_error_handler(UnsupportedFile, lambda e: problem(415, str(e)))
    app.register_error_handler(Exception, _unexpected)
