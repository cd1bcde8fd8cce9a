"""``/api/files``: upload media for job inputs, download uploads and job results."""

from __future__ import annotations

from typing import Any

from flask import Response, current_app, request, send_file
from flask_openapi3 import APIBlueprint, Tag

from pipelines.services.files import get_file, open_download, save_upload
from web.auth import FILE_GRANT_SECONDS, current_user_id, grant_for
from web.errors import Problem
from web.ratelimit import check_upload_rate, count_upload_bytes
from web.schemas import FileForm, FileLinkOut, FileOut, FilePath, ProblemOut
from web.validation import FORM_OVERHEAD

bp = APIBlueprint("files", __name__, url_prefix="/api/files", abp_tags=[Tag(name="files")],
                  abp_security=[{"bearer": []}], abp_responses={401: ProblemOut})


@bp.post("", responses={201: FileOut, 400: ProblemOut, 413: ProblemOut, 415: ProblemOut, 429: ProblemOut},
         summary="Upload a file (multipart field `file`)",
         description="Audio, video or an image, recognised from its content, not its name. Name it in a job "
                     "input as `\"file:<id>\"`. Uploads are limited per user: a count and bytes per hour (429), "
                     "and a storage quota of all your files (413); the problem's `limit` names the one reached.")
def upload_file(form: FileForm) -> tuple[dict[str, Any], int]:
    user_id = current_user_id()
    config = current_app.config
    length = request.content_length
    # Counted before the body is read: the upload, and its declared bytes
    check_upload_rate(user_id, min(length or 0, config["MAX_CONTENT_LENGTH"]))
    upload = request.files.get("file")
    if upload is None:
        raise Problem(400, "Send the file as the multipart/form-data field `file`.")
    stream: Any = upload.stream
    stored = save_upload(stream, filename=upload.filename, user_id=user_id, max_bytes=config["MAX_UPLOAD_BYTES"],
                         quota_bytes=config["USER_QUOTA_BYTES"] or None,
                         declared_bytes=max(0, (length or 0) - FORM_OVERHEAD))
    if length is None:  # a chunked upload: its bytes count once known (the next upload may be refused)
        count_upload_bytes(user_id, stored["size"])
    return stored, 201


@bp.get("/<file_id>", summary="Download a file (as an attachment)",
        responses={200: {"description": "The file's bytes.",
                         "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}},
                   404: ProblemOut},
        description="Authenticate with the Authorization header, or with the `access` parameter of a link from "
                    "`POST /api/files/{file_id}/link`.")
def download_file(path: FilePath) -> Response:
    download = open_download(path.file_id, user_id=current_user_id())
    if download.path is not None:  # local storage: ranges and conditional requests (media players seek)
        response = send_file(download.path, mimetype=download.content_type, as_attachment=True,
                             download_name=download.filename, conditional=True, max_age=0)
    else:
        response = send_file(download.open(), mimetype=download.content_type, as_attachment=True,
                             download_name=download.filename, conditional=False, max_age=0)
        response.content_length = download.size
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response.headers["Cache-Control"] = "private, max-age=0"
    return response


@bp.post("/<file_id>/link", responses={201: FileLinkOut, 404: ProblemOut},
         summary="A short-lived download link, for players and links in browsers",
         description=f"A URL with a signed `access` parameter that downloads this file for "
                     f"{FILE_GRANT_SECONDS} s without the Authorization header.")
def link_file(path: FilePath) -> tuple[dict[str, Any], int]:
    user_id = current_user_id()
    info = get_file(path.file_id, user_id=user_id)
    grant = grant_for(f"file:{path.file_id}", user_id=user_id, path=f"/api/files/{path.file_id}",
                      seconds=FILE_GRANT_SECONDS)
    return {**info, "link": grant.url, "expires_in": grant.expires_in}, 201
