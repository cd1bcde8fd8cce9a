"""The Flask application factory.

Configuration comes in three layers: defaults from :func:`conveyor.config.settings` (the
environment), then the ``config`` mapping given to :func:`create_app` (tests). The OpenAPI 3.1
description is generated from the views' models by flask-openapi3 and served at
``/api/openapi.json``; ``/api/docs`` is Swagger UI from the package's own files (no CDN).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Response, redirect
from flask.json.provider import DefaultJSONProvider
from flask_openapi3 import Info, OpenAPI

from conveyor.config import settings
from pipelines.worker import ensure_setup
from web import dashboard, files, jobs, ops, pipelines_api, ratelimit, stream
from web.auth import authenticate
from web.errors import register_error_handlers, validation_failed
from web.schemas import ProblemOut
from web.validation import FORM_OVERHEAD, limit_body, refuse_nul_characters


class JSONProvider(DefaultJSONProvider):
    """Flask's JSON, where a body nested too deeply to parse is malformed JSON (400), not a server error."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError("the JSON document nests too deeply") from None


class ConveyorAPI(OpenAPI):
    """flask-openapi3's app, describing every error response as ``application/problem+json``."""

    json_provider_class = JSONProvider

    def generate_spec_json(self) -> None:
        super().generate_spec_json()
        problem_ref = {"$ref": "#/components/schemas/ProblemOut"}
        self.spec_json["components"]["schemas"]["ProblemOut"] = ProblemOut.model_json_schema()
        self.spec_json["components"]["schemas"].pop("ValidationErrorModel", None)
        for path_item in self.spec_json["paths"].values():
            for operation in path_item.values():
                for status, response in (operation.get("responses") or {}).items():
                    if status.startswith(("4", "5")) and status != "503":
                        response["content"] = {"application/problem+json": {"schema": problem_ref}}


def default_config() -> dict[str, Any]:
    current = settings()
    return {
        "SECRET_KEY": current.signing_key,
        "MAX_UPLOAD_BYTES": current.max_upload_bytes,
        "MAX_JSON_BYTES": current.max_json_bytes,
        "UPLOAD_RATE_LIMIT": current.upload_rate_limit,
        "UPLOAD_BYTES_PER_HOUR": current.upload_bytes_per_hour,
        "USER_QUOTA_BYTES": current.user_quota_bytes,
        "JOB_RATE_LIMIT": current.job_rate_limit,
        "RATELIMIT_STORAGE_URI": current.redis_url or "memory://",
        "SWAGGER_CONFIG": {"validatorUrl": None, "persistAuthorization": False},
    }


def create_app(config: Mapping[str, Any] | None = None) -> ConveyorAPI:
    """Build the web application (and set up this process's broker and pipelines, once)."""
    ensure_setup()
    app = ConveyorAPI(
        __name__,
        info=Info(title="Conveyor", version="1",
                  description="Durable background pipelines for slow AI media work. Every `/api/` route needs "
                              "`Authorization: Bearer <token>`; errors are `application/problem+json`."),
        security_schemes={"bearer": {"type": "http", "scheme": "bearer"}},
        doc_prefix="/api",
        doc_url="/openapi.json",
        validation_error_callback=validation_failed,
        validation_error_status=422,
    )
    app.json.sort_keys = False  # type: ignore[attr-defined]  # keep the contract's field order
    app.config.update(default_config())
    app.config.update(config or {})
    app.config["MAX_CONTENT_LENGTH"] = app.config["MAX_UPLOAD_BYTES"] + FORM_OVERHEAD

    app.before_request(limit_body)
    app.before_request(authenticate)
    app.before_request(refuse_nul_characters)
    ratelimit.install(app)
    for blueprint in (jobs.bp, stream.bp, files.bp, pipelines_api.bp, ops.bp, ops.health_bp):
        app.register_api(blueprint)
    app.register_blueprint(dashboard.bp)
    app.add_url_rule("/api/docs", "docs", lambda: redirect("/api/swagger"))
    register_error_handlers(app)
    app.after_request(_security_headers)
    return app


def _security_headers(response: Response) -> Response:
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    return response
