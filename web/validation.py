"""A check every request gets before its view's model: no NUL character anywhere it could be stored.

PostgreSQL's text and JSON columns cannot hold U+0000, so an id, a filter, a header or a string
in a body carrying one would fail in the database (a 500) where SQLite stored it. It is refused
here, on every route and both databases, with 422 naming the field.
"""

from __future__ import annotations

from flask import current_app, request

from pipelines.services.jobs import NUL, nul_fields
from web.errors import Problem

#: Request headers whose values are stored.
STORED_HEADERS = ("Idempotency-Key",)


def refuse_nul_characters() -> None:
    """``before_request``: answer 422 when the path, the query, a stored header or a JSON body holds NUL."""
    fields = nul_fields(dict(request.view_args or {}))
    fields += nul_fields({name: " ".join(request.args.getlist(name)) for name in request.args})
    fields += nul_fields({name: request.headers.get(name, "") for name in STORED_HEADERS})
    if NUL in request.path and not fields:
        fields.append("path")
    if request.is_json and request.content_length != 0:
        fields += [f"body.{name}" for name in nul_fields(request.get_json(silent=True))]
    if fields:
        raise Problem(422, "The request has invalid fields.",
                      errors=[{"field": name, "message": "must not contain the NUL character (U+0000)"}
                              for name in list(dict.fromkeys(fields))[:20]])


#: bytes of multipart framing allowed on top of the upload limit (the exact limit is checked on the file).
FORM_OVERHEAD = 64 * 1024
#: The one route whose body is an upload, under the upload limit; every other body is JSON's.
UPLOAD_ENDPOINTS = ("files.upload_file",)


def limit_body() -> None:
    """``before_request``: hold a non-upload body to ``MAX_JSON_BYTES`` before anything reads it.

    A declared ``Content-Length`` over the limit is answered 413 at once; a body without one
    (chunked) is cut off with 413 as soon as the stream passes the limit, before it is parsed.
    """
    if request.endpoint in UPLOAD_ENDPOINTS:
        return  # MAX_CONTENT_LENGTH: the upload limit and its multipart framing
    limit = int(current_app.config["MAX_JSON_BYTES"])
    too_large = Problem(413, f"The request body is larger than the limit of {limit} bytes for JSON "
                             f"(CONVEYOR_MAX_JSON_BYTES).", limit="max_json_bytes")
    if request.content_length is not None:
        request.max_content_length = limit
        if request.content_length > limit:
            raise too_large
    elif request.environ.get("wsgi.input_terminated") and "chunked" in request.headers.get("Transfer-Encoding", ""):
        # A chunked body: read at most one byte past the limit (werkzeug stops there) and keep it
        # for the view; one byte past means the body is too large, whatever follows is not read.
        request.max_content_length = limit + 1
        if len(request.get_data(cache=True)) > limit:
            raise too_large
