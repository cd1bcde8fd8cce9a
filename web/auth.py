"""Bearer-token authentication of ``/api/`` routes, and short-lived signed grants for browsers.

Every ``/api/`` route needs ``Authorization: Bearer <token>`` (the OpenAPI document and its docs
page excepted). A token in the query string is refused with 401, so tokens do not end up in
server logs, browser history or Referer headers.

A browser cannot send that header from an ``EventSource`` or an ``<audio src>``; for those, a
client holding the token asks for a *grant*: a URL carrying ``access=<signed value>`` that
opens one resource (one job's event stream, or one file) for one user, for a short time.
The signature (HMAC with SECRET_KEY, via itsdangerous) binds the user, the resource, the time
and the user's token generation; a grant cannot open anything else, expires on its own, and
stops working when the token it was made with is replaced or revoked.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app, g, request
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from pipelines.services.users import token_generation, user_for_token
from web.errors import Problem

#: Query parameters that would carry a bearer token; a request using one is refused.
TOKEN_PARAMETERS = ("token", "access_token", "api_key", "apikey", "bearer")  #: all redacted in access logs
#: The query parameter of a signed grant.
GRANT_PARAMETER = "access"
#: s an event-stream grant may be used to connect.
STREAM_GRANT_SECONDS = 60
#: s a file grant stays valid (a media player fetches ranges while it plays).
FILE_GRANT_SECONDS = 3600
#: Blueprints and endpoints that answer without a token: the OpenAPI document and its docs pages.
PUBLIC_BLUEPRINTS = ("openapi", "swagger")
PUBLIC_ENDPOINTS = ("docs",)


@dataclass(frozen=True)
class Grant:
    """What a grant URL opens."""

    url: str
    expires_in: int


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="conveyor-grant")


def grant_for(resource: str, *, user_id: str, path: str, seconds: int) -> Grant:
    """A URL for ``path`` that opens ``resource`` (e.g. ``events:<job id>``) as ``user_id``."""
    value = _serializer().dumps({"u": user_id, "r": resource, "g": token_generation(user_id)})
    return Grant(url=f"{path}?{GRANT_PARAMETER}={value}", expires_in=seconds)


def _user_from_grant(value: str) -> str:
    resource = _resource_of_request()
    if resource is None:
        raise Problem(401, "A signed access grant opens only event streams and files.",
                      headers={"WWW-Authenticate": "Bearer"})
    seconds = STREAM_GRANT_SECONDS if resource.startswith("events:") else FILE_GRANT_SECONDS
    try:
        data = _serializer().loads(value, max_age=seconds)
    except SignatureExpired:
        raise Problem(401, "The access grant has expired; ask for a new one.") from None
    except BadSignature:
        raise Problem(401, "The access grant is not valid.") from None
    if not isinstance(data, dict) or data.get("r") != resource or not data.get("u"):
        raise Problem(401, "The access grant is for another resource.")
    if data.get("g") is None or data["g"] != token_generation(str(data["u"])):
        raise Problem(401, "The access grant was made with a token that has since been replaced or revoked.")
    return str(data["u"])


def _resource_of_request() -> str | None:
    args = request.view_args or {}
    if request.endpoint == "events.job_events" and "job_id" in args:
        return f"events:{args['job_id']}"
    if request.endpoint == "files.download_file" and "file_id" in args:
        return f"file:{args['file_id']}"
    return None


def authenticate() -> None:
    """``before_request``: set ``g.user_id`` for ``/api/`` routes, or answer 401."""
    g.user_id = None
    if (not request.path.startswith("/api/") or request.blueprint in PUBLIC_BLUEPRINTS
            or request.endpoint in PUBLIC_ENDPOINTS):
        return
    if request.endpoint is None:
        return  # 404/405 come next; they reveal nothing about anyone's data
    if any(name in request.args for name in TOKEN_PARAMETERS):
        raise Problem(401, "Send the token in the Authorization header, not in the URL.",
                      headers={"WWW-Authenticate": "Bearer"})
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if not header and GRANT_PARAMETER in request.args:
        g.user_id = _user_from_grant(request.args[GRANT_PARAMETER])
        return
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(401, "Send Authorization: Bearer <token>.", headers={"WWW-Authenticate": "Bearer"})
    user_id = user_for_token(token.strip())
    if user_id is None:
        raise Problem(401, "The token is not valid.", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    g.user_id = user_id


def current_user_id() -> str:
    """The authenticated user's id (inside an ``/api/`` view)."""
    return g.user_id
