"""Shared pieces of the HTTP cloud providers: a client, create-then-poll with checkpoints, downloads.

A provider job is created once: its id is saved with ``ctx.checkpoint`` before the first poll,
and while the provider works the stage calls ``ctx.poll_later`` (no thread is held, no retry is
spent). A redelivered or re-scheduled message finds the saved id and polls the same job instead
of paying for a new one. Outputs are downloaded into our storage at once, because provider URLs
expire. Calls to a provider hold one of its concurrency slots (:mod:`actors.limits`); waiting
does not. HTTP errors are left as ``httpx.HTTPStatusError``: :func:`actors.errors.classify` maps
429 (with ``Retry-After``), 5xx and 4xx to retry or fail.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx

from actors.context import current_stage
from actors.errors import InvalidMedia, PermanentError, TransientError
from actors.ffmpeg import probe
from actors.limits import provider_slot
from conveyor.config import settings

HTTP_TIMEOUT = httpx.Timeout(120.0, connect=10.0)  #: s per request
MAX_DOWNLOAD_BYTES = 2 * 1024**3  #: the largest provider output we copy into storage
#: The checkpoint key under which a stage keeps its provider job id.
PROVIDER_ID = "provider_id"

_client: httpx.Client | None = None
_client_lock = threading.Lock()


def http_client() -> httpx.Client:
    """The process's shared client (thread-safe, pooled). It carries no credentials of its own."""
    global _client
    with _client_lock:
        if _client is None:
            _client = httpx.Client(timeout=HTTP_TIMEOUT, follow_redirects=False)
        return _client


def require_secret(name: str, variable: str) -> str:
    """The credential ``name`` from configuration.

    Raises:
      PermanentError: naming the environment variable to set.
    """
    value = settings().secret(name)
    if not value:
        raise PermanentError(f"this provider needs {variable}", code="provider_auth")
    return value


def configured_base_url(given: str | None, variable: str) -> str:
    """``given`` (tests pass an emulator's), else the base URL configured in ``variable``.

    The trailing slash is dropped because callers append paths that start with one.
    """
    return (given or settings().base_url(variable)).rstrip("/")


def json_api_headers(authorization: str) -> dict[str, str]:
    """The headers of a call to a provider's own JSON API, ``authorization`` being the credential.

    Only API calls carry them: output URLs are fetched without any credential (:func:`download`).
    """
    return {"Authorization": authorization, "Accept": "application/json"}


def checked(response: httpx.Response) -> httpx.Response:
    """``response`` when it succeeded, else raise ``httpx.HTTPStatusError`` for :func:`classify`."""
    response.raise_for_status()
    return response


def json_of(response: httpx.Response) -> dict[str, Any]:
    """The JSON object of a successful response.

    Raises:
      TransientError: when the provider answered something that is not a JSON object.
    """
    checked(response)
    try:
        body = response.json()
    except ValueError:
        raise TransientError("the provider answered with malformed JSON") from None
    if not isinstance(body, dict):
        raise TransientError("the provider answered with an unexpected JSON shape")
    return body


def answered(value: Any, missing: str) -> str:
    """``value`` when the provider gave a non-empty string (an id, a URL).

    Raises:
      PermanentError: saying ``missing`` otherwise.
    """
    if not isinstance(value, str) or not value:
        raise PermanentError(missing, code="provider_failed")
    return value


def upload_file(client: httpx.Client, url: str, path: Path, *, headers: dict[str, str], field: str,
                content_type: str) -> dict[str, Any]:
    """POST ``path`` as the multipart field ``field``; the provider's JSON answer."""
    with path.open("rb") as body:
        return json_of(client.post(url, headers=headers, files={field: (path.name, body, content_type)}))


def create_job(client: httpx.Client, url: str, payload: dict[str, Any], *, headers: dict[str, str],
               missing: str) -> str:
    """POST ``payload`` to start a provider job; the job's id (the answer's ``id``).

    Raises:
      PermanentError: saying ``missing`` when the answer has no id.
    """
    return answered(json_of(client.post(url, headers=headers, json=payload)).get("id"), missing)


def job_answer(client: httpx.Client, url: str, *, headers: dict[str, str]) -> dict[str, Any] | None:
    """GET a provider job; its JSON, or None when the provider does not know the job (404)."""
    response = client.get(url, headers=headers)
    if response.status_code == 404:
        return None
    return json_of(response)


def saved_or_new(key: str, provider: str, make: Callable[[], str]) -> str:
    """The value checkpointed under ``key``, else ``make()``'s, checkpointed before going on.

    ``make`` pays the provider (an upload, a new job), so it holds one of ``provider``'s slots,
    and a redelivered message finds the saved value instead of paying again.
    """
    ctx = current_stage()
    value = ctx.saved(key)
    if not value:
        with provider_slot(provider):
            value = ctx.checkpoint(key, make())
    return str(value)


@dataclass(frozen=True)
class RemoteState:
    """What one poll of a provider job said."""

    state: Literal["pending", "done", "failed"]
    output: Any = None  #: done: what the caller needs (usually an output URL)
    error: str | None = None  #: failed: the provider's reason


def await_remote_job(
    *,
    provider: str,
    create: Callable[[], str],
    poll: Callable[[str], RemoteState | None],
    interval: float,
    key: str = PROVIDER_ID,
    what: str = "provider job",
) -> Any:
    """Create a provider job once, then poll it; returns its output when done.

    Parameters:
      provider: the provider's name; each call holds one of its concurrency slots
        (:func:`actors.limits.provider_slot`), released before waiting.
      create: starts the job and returns its id (called only when no id was saved).
      poll: reads the job's state; None means the provider does not know the id.
      interval: s until the next poll while the job is pending.
      key: the checkpoint key holding the id (several jobs in one stage need several keys).

    Raises:
      PollLater: (through ``ctx.poll_later``) while the job is pending.
      PermanentError: when the provider says the job failed; the saved id is cleared first so
        a retry of the job starts a fresh provider job.
      TransientError: when the provider forgot the saved id (cleared too, so a retry recreates it).
    """
    ctx = current_stage()
    job_id = saved_or_new(key, provider, create)
    with provider_slot(provider):
        state = poll(job_id)
    if state is None:
        ctx.checkpoint(key, None)
        raise TransientError(f"the provider no longer knows {what} {job_id}; it will be created again")
    if state.state == "done":
        return state.output
    if state.state == "failed":
        ctx.checkpoint(key, None)
        raise PermanentError(f"the provider could not finish {what}: {state.error or 'no reason given'}",
                             code="provider_failed")
    ctx.poll_later(interval)
    raise AssertionError("poll_later returns only by raising")  # pragma: no cover


def download(client: httpx.Client, url: str, dest: Path) -> Path:
    """Copy a provider's output URL to ``dest`` without sending any credential.

    Raises:
      InvalidMedia: when the output is empty or larger than :data:`MAX_DOWNLOAD_BYTES`.
    """
    if not url.startswith(("https://", "http://")):
        raise PermanentError(f"the provider returned an output address we cannot fetch: {url[:80]!r}")
    size = 0
    with client.stream("GET", url, headers={"Accept": "*/*"}) as response:
        checked(response)
        with dest.open("wb") as out:
            for chunk in response.iter_bytes(1 << 20):
                size += len(chunk)
                if size > MAX_DOWNLOAD_BYTES:
                    raise InvalidMedia("the provider's output is larger than we accept")
                out.write(chunk)
    if size == 0:
        raise InvalidMedia("the provider's output is empty")
    return dest


def download_output(client: httpx.Client, output: Any, dest: Path, *, missing: str,
                    no_video: str | None = None) -> Path:
    """Copy a finished job's output URL (what :func:`await_remote_job` returned) to ``dest``.

    Raises:
      PermanentError: saying ``missing`` when the job finished without a URL.
      InvalidMedia: saying ``no_video``, when given, if the file has no video stream.
    """
    if not isinstance(output, str):
        raise PermanentError(missing, code="provider_failed")
    download(client, output, dest)
    if no_video and not probe(dest).has_video:
        raise InvalidMedia(no_video)
    return dest
