"""The dashboard at ``/``: one HTML page with plain CSS and JavaScript, served from this package.

It talks to the same REST API as every other client. Opening ``/#token=<token>`` signs in
(the token moves to ``sessionStorage`` and leaves the address bar); the fragment is never
sent to the server.
"""

from __future__ import annotations

from flask import Blueprint, Response, make_response, render_template

bp = Blueprint("dashboard", __name__)

#: The page loads only its own scripts and styles; media and downloads come from this origin too.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)


@bp.get("/")
def index() -> Response:
    response = make_response(render_template("index.html"))
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["Cache-Control"] = "no-cache"
    return response
