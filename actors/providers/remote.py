"""Shared pieces of the HTTP cloud providers: a client, create-then-poll with checkpoints, downloads.

A provider job is created once: its id is saved with ``ctx.checkpoint`` before the first poll,
and while the provider works the stage calls ``ctx.poll_later`` (no thread is held, no retry is
spent). A redelivered or re-scheduled message finds the saved id and polls the same job instead
of paying for a new one. Outputs are downloaded into our storage at once, because provider URLs
expire. Calls to a provider hold one of its concurrency slots (:mod:`actors.limits`); waiting
does not. HTTP errors are left as ``httpx.HTTPStatusError``: :func:`actors.errors.classify` maps
429 (with ``Retry-After``), 5xx and 4xx to retry or fail.

The providers that run a job this way (Replicate, D-ID, Luma) differ only in their paths, their
state names, where the result URL is and how often to poll: :class:`RemoteProvider` holds the rest,
and each subclass says what differs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import httpx

from actors.context import StageContext, current_stage
from actors.errors import InvalidMedia, PermanentError, TransientError
from actors.limits import provider_slot
from actors.media.ffmpeg import probe
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


@dataclass(frozen=True)
class PollSchedule:
    """When to poll a pending provider job again: ``first`` s after the first poll, then ``factor``
    times longer after each one, never more than ``most`` s (a ``factor`` of 1 polls at a fixed rate)."""

    first: float  #: s
    factor: float = 1.0
    most: float | None = None  #: s

    def delay(self, polls: int) -> float:
        """s to wait after the ``polls``-th poll of a job (1 for the first)."""
        wait = self.first * self.factor ** max(0, polls - 1)
        return wait if self.most is None else min(wait, self.most)


def await_remote_job(
    *,
    provider: str,
    create: Callable[[], str],
    poll: Callable[[str], RemoteState | None],
    schedule: PollSchedule,
    key: str = PROVIDER_ID,
    what: str = "provider job",
) -> Any:
    """Create a provider job once, then poll it; returns its output when done.

    Parameters:
      provider: the provider's name; each call holds one of its concurrency slots
        (:func:`actors.limits.provider_slot`), released before waiting.
      create: starts the job and returns its id (called only when no id was saved).
      poll: reads the job's state; None means the provider does not know the id.
      schedule: when to poll again while the job is pending; one that backs off checkpoints the
        polls made so far under ``key + "_polls"``.
      key: the checkpoint key holding the id (several jobs in one stage need several keys).

    Raises:
      PollLater: (through ``ctx.poll_later``) while the job is pending.
      PermanentError: when the provider says the job failed; the saved id is cleared first so
        a retry of the job starts a fresh provider job.
      TransientError: when the provider forgot the saved id (cleared too, so a retry recreates it).
    """
    ctx = current_stage()
    polls_key = f"{key}_polls"
    job_id = saved_or_new(key, provider, create)
    with provider_slot(provider):
        state = poll(job_id)
    if state is None:
        _forget(ctx, key, polls_key)
        raise TransientError(f"the provider no longer knows {what} {job_id}; it will be created again")
    if state.state == "done":
        return state.output
    if state.state == "failed":
        _forget(ctx, key, polls_key)
        raise PermanentError(f"the provider could not finish {what}: {state.error or 'no reason given'}",
                             code="provider_failed")
    polls = 1
    if schedule.factor != 1.0:  # a fixed rate needs no count, and saves no checkpoint for it
        polls = ctx.checkpoint(polls_key, int(ctx.saved(polls_key) or 0) + 1)
    ctx.poll_later(schedule.delay(polls))
    raise AssertionError("poll_later returns only by raising")  # pragma: no cover


def _forget(ctx: StageContext, key: str, polls_key: str) -> None:
    """Clear a provider job's saved id (its poll count first), so the next run creates a new one."""
    if ctx.saved(polls_key) is not None:
        ctx.checkpoint(polls_key, None)
    ctx.checkpoint(key, None)


class RemoteProvider:
    """A cloud provider that runs a job: create it (``POST create_path``), poll it (``GET poll_path``)
    until its state is one of ``done_states`` or ``failed_states``, then hand back its result URL.

    Subclasses set the class attributes and say where the result URL is (:meth:`result_url`) and,
    when the provider words it differently, the reason of a failure (:meth:`failure_reason`).
    """

    name: ClassVar[str]  #: the provider's name in :mod:`actors.providers` and its concurrency slots
    label: ClassVar[str]  #: its name in messages, e.g. "Luma"
    base_url_variable: ClassVar[str]  #: e.g. LUMA_BASE_URL
    secret: ClassVar[tuple[str, str]]  #: (setting name, environment variable) of the credential
    auth_scheme: ClassVar[str] = "Bearer"
    create_path: ClassVar[str]
    poll_path: ClassVar[str]  #: with ``{id}``
    job_noun: ClassVar[str]  #: what the provider calls its job, e.g. "generation"
    state_field: ClassVar[str] = "status"
    done_states: ClassVar[frozenset[str]]
    failed_states: ClassVar[frozenset[str]]
    error_field: ClassVar[str] = "error"
    schedule: ClassVar[PollSchedule]

    def __init__(self, client: httpx.Client | None = None, base_url: str | None = None,
                 api_key: str | None = None) -> None:
        self.client = client or http_client()
        self.base_url = configured_base_url(base_url, self.base_url_variable)
        self.api_key = api_key or require_secret(*self.secret)
        self.headers = json_api_headers(f"{self.auth_scheme} {self.api_key}")

    def result_url(self, answer: dict[str, Any]) -> Any:
        """The result URL in a finished job's answer."""
        raise NotImplementedError

    def failure_reason(self, answer: dict[str, Any]) -> Any:
        """The provider's reason in a failed job's answer."""
        return answer.get(self.error_field)

    def create(self, payload: dict[str, Any]) -> str:
        """POST ``payload`` to start a provider job; the job's id (the answer's ``id``).

        Raises:
          PermanentError: when the answer has no id.
        """
        answer = json_of(self.client.post(f"{self.base_url}{self.create_path}", headers=self.headers,
                                          json=payload))
        return answered(answer.get("id"), f"{self.label} did not return a {self.job_noun} id")

    def poll(self, job_id: str) -> RemoteState | None:
        """GET a provider job's state; None when the provider does not know the job (404)."""
        response = self.client.get(self.base_url + self.poll_path.format(id=job_id), headers=self.headers)
        if response.status_code == 404:
            return None
        answer = json_of(response)
        state = answer.get(self.state_field)
        if state in self.done_states:
            return RemoteState("done", self.result_url(answer))
        if state in self.failed_states:
            return RemoteState("failed", error=str(self.failure_reason(answer) or state))
        return RemoteState("pending")

    def run(self, payload: dict[str, Any], *, what: str) -> Any:
        """Create the job with ``payload`` (unless one was saved), poll it; its result URL when done.

        Raises as :func:`await_remote_job`.
        """
        return await_remote_job(provider=self.name, create=lambda: self.create(payload), poll=self.poll,
                                schedule=self.schedule, what=what)

    def fetch_result(self, url: Any, dest: Path, *, no_video: str | None = None) -> Path:
        """Copy the finished job's result ``url`` to ``dest`` (see :func:`download_output`)."""
        return download_output(self.client, url, dest, no_video=no_video,
                               missing=f"{self.label} finished the {self.job_noun} without a result URL")


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
