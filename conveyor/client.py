"""A Python client of Conveyor's REST API (httpx).

    from conveyor.client import Client

    with Client("http://127.0.0.1:5000", token) as conveyor:
        audio = conveyor.upload("lecture.mp3")
        job = conveyor.submit("lecture_notes", {"audio": audio["ref"]})
        done = conveyor.wait(job["id"], progress=lambda j: print(j["progress"], j["step"]))
        print(done["result"]["summary"])

Errors from the server raise :class:`APIError` carrying the problem document; a server that
cannot be reached, or an address that answers with something other than Conveyor's JSON, raises
:class:`APIError` too (``status`` 0 for an unreachable one), with a message that says what to check.
"""

from __future__ import annotations

import builtins
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import httpx

from conveyor.statuses import TERMINAL

__all__ = ["TERMINAL", "APIError", "Client", "JobTimeout"]
#: The fewest characters of a job id :meth:`Client.resolve` accepts as a prefix.
MIN_PREFIX = 8
#: s; the default time one request may take (event streams have no read timeout).
DEFAULT_TIMEOUT = 30.0


class APIError(Exception):
    """Raised when the server answers with an error; ``problem`` is its problem document."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        detail = problem.get("detail") or problem.get("title") or f"HTTP {status}"
        fields = "; ".join(f"{e.get('field')}: {e.get('message')}" for e in problem.get("errors") or [])
        super().__init__((f"{status} " if status else "") + f"{detail}" + (f" ({fields})" if fields else ""))
        self.status = status
        self.problem = problem
        self.retry_after: float | None = None


class JobTimeout(Exception):
    """Raised when :meth:`Client.wait` gives up before the job finished."""


class Client:
    """Conveyor's REST API for one user (one bearer token)."""

    def __init__(self, base_url: str, token: str, *, timeout: float = DEFAULT_TIMEOUT,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport,
                                  headers={"Authorization": f"Bearer {token}", "User-Agent": "conveyor-client/1"})

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- plumbing --------------------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None
        if response.status_code >= 400:
            raise _error(response)
        return response

    def _unreachable(self, exc: Exception) -> APIError:
        reason = str(exc) or type(exc).__name__
        return APIError(0, {"detail": f"cannot reach {self.base_url} ({reason}); is the server running "
                                           f"(`make dev`), and is CONVEYOR_URL its address?"})

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        """The JSON body of a successful request; an answer that is not JSON raises :class:`APIError`."""
        return self._parse(self._request(method, path, **kwargs), path)

    def _parse(self, response: httpx.Response, path: str) -> Any:
        try:
            return response.json()
        except ValueError:
            kind = response.headers.get("Content-Type", "no content type").split(";")[0]
            raise APIError(response.status_code, {
                "detail": f"{self.base_url}{path} answered with {kind}, not Conveyor's JSON; "
                          f"is CONVEYOR_URL the address of a Conveyor server?"}) from None

    # --- jobs ------------------------------------------------------------------------------------------

    def submit(self, pipeline: str, input: dict[str, Any] | None = None, *, project_id: str | None = None,
               webhook_url: str | None = None, idempotency_key: str | None = None,
               metadata: Any = None) -> dict[str, Any]:
        """Start a job; returns it (status ``pending``). ``metadata``: any JSON (≤ 4 KB) kept with the job."""
        body: dict[str, Any] = {"pipeline": pipeline, "input": input or {}}
        if project_id is not None:
            body["project_id"] = project_id
        if webhook_url is not None:
            body["webhook_url"] = webhook_url
        if metadata is not None:
            body["metadata"] = metadata
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._json("POST", "/api/jobs", json=body, headers=headers)

    def get(self, job_id: str) -> dict[str, Any]:
        return self._json("GET", f"/api/jobs/{job_id}")

    def list(self, *, pipeline: str | None = None, status: str | None = None, project_id: str | None = None,
             limit: int = 20, cursor: str | None = None, metadata: dict[str, str] | None = None) -> dict[str, Any]:
        """One page: ``{"jobs": [...], "next_cursor": ...}``, newest first.

        ``metadata``: only jobs whose metadata holds each of these string values at its top-level key.
        """
        params = {k: v for k, v in {"pipeline": pipeline, "status": status, "project_id": project_id,
                                    "limit": limit, "cursor": cursor}.items() if v is not None}
        params.update({f"metadata.{key}": value for key, value in (metadata or {}).items()})
        return self._json("GET", "/api/jobs", params=params)

    def resolve(self, job_id: str) -> str:
        """The full id of the job ``job_id`` names: a full id, or a unique prefix of at least
        :data:`MIN_PREFIX` characters among this user's jobs (looked up through the list endpoint).

        Raises:
          APIError: (404) when no job matches, (409) when several do, listing them.
        """
        job_id = job_id.strip().lower()
        if len(job_id) == 36:
            return job_id
        if len(job_id) < MIN_PREFIX:
            raise APIError(400, {"detail": f"{job_id!r} is too short to name a job; give at least "
                                                f"{MIN_PREFIX} characters of its id"})
        matches = [job["id"] for job in self.iter_jobs(limit=100) if job["id"].startswith(job_id)]
        if not matches:
            raise APIError(404, {"detail": f"none of your jobs has an id starting with {job_id}"})
        if len(matches) > 1:
            raise APIError(409, {"detail": f"{job_id} is the start of {len(matches)} job ids: "
                                                + ", ".join(matches) + "; give more characters"})
        return matches[0]

    def iter_jobs(self, **filters: Any) -> Iterator[dict[str, Any]]:
        """Every job matching ``filters``, following the cursor."""
        cursor = None
        while True:
            page = self.list(cursor=cursor, **filters)
            yield from page["jobs"]
            cursor = page["next_cursor"]
            if not cursor:
                return

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._json("POST", f"/api/jobs/{job_id}/cancel")

    def retry(self, job_id: str) -> dict[str, Any]:
        return self._json("POST", f"/api/jobs/{job_id}/retry")

    def events(self, job_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """The job's Server-Sent Events as ``(kind, job)``, until a terminal status ends the stream."""
        timeout = httpx.Timeout(DEFAULT_TIMEOUT, read=None)
        with self._http.stream("GET", f"/api/jobs/{job_id}/events", timeout=timeout,
                               headers={"Accept": "text/event-stream"}) as response:
            if response.status_code >= 400:
                response.read()
                raise _error(response)
            kind, data = "message", list[str]()
            for line in response.iter_lines():
                if line == "":
                    if data:
                        yield kind, json.loads("\n".join(data))
                    kind, data = "message", list[str]()
                elif line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].lstrip())

    def wait(self, job_id: str, *, progress: Callable[[dict[str, Any]], None] | None = None,
             timeout: float | None = None, poll_interval: float | None = None) -> dict[str, Any]:
        """Block until the job finishes; returns it. ``progress`` is called with each new state.

        Follows the event stream, and falls back to polling (honouring ``Retry-After``) when the
        stream is unavailable or ``poll_interval`` is given.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        if poll_interval is None:
            try:
                for _, job in self.events(job_id):
                    if progress:
                        progress(job)
                    if job["status"] in TERMINAL:
                        return job
                    if deadline and time.monotonic() > deadline:
                        raise JobTimeout(f"job {job_id} did not finish in {timeout} s")
            except (httpx.TransportError, ValueError):
                pass  # the stream broke: poll instead
        return self._poll(job_id, progress, deadline, poll_interval)

    def _poll(self, job_id: str, progress: Callable[[dict[str, Any]], None] | None, deadline: float | None,
              interval: float | None) -> dict[str, Any]:
        etag = None
        job: dict[str, Any] | None = None
        while True:
            headers: dict[str, str] = {"If-None-Match": etag} if etag else {}
            response = self._request("GET", f"/api/jobs/{job_id}", headers=headers)
            if response.status_code == 200:
                job, etag = self._parse(response, f"/api/jobs/{job_id}"), response.headers.get("ETag")
                if progress:
                    progress(job)
            assert job is not None
            if job["status"] in TERMINAL:
                return job
            if deadline and time.monotonic() > deadline:
                raise JobTimeout(f"job {job_id} did not finish in time")
            time.sleep(interval if interval is not None else float(response.headers.get("Retry-After", "1")))

    # --- files and the rest ------------------------------------------------------------------------------

    def upload(self, file: str | Path | BinaryIO, *, filename: str | None = None) -> dict[str, Any]:
        """Upload a file; returns its file object plus ``ref`` (``"file:<id>"``) for job inputs."""
        if isinstance(file, str | Path):
            path = Path(file)
            with path.open("rb") as handle:
                return self.upload(handle, filename=filename or path.name)
        stored = self._json("POST", "/api/files", files={"file": (filename or "upload", file)})
        return {**stored, "ref": f"file:{stored['id']}"}

    def download(self, file_id_or_url: str, dest: str | Path) -> Path:
        """Save a file (an id or a ``/api/files/<id>`` URL from a job result) to ``dest``."""
        target = Path(dest)
        with target.open("wb") as out:
            for chunk in self._download_chunks(file_id_or_url):
                out.write(chunk)
        return target

    def download_bytes(self, file_id_or_url: str) -> bytes:
        """A file's bytes (an id or a ``/api/files/<id>`` URL from a job result); for small files."""
        return b"".join(self._download_chunks(file_id_or_url))

    def _download_chunks(self, file_id_or_url: str) -> Iterator[bytes]:
        path = file_id_or_url if file_id_or_url.startswith("/") else f"/api/files/{file_id_or_url}"
        try:
            with self._http.stream("GET", path) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _error(response)
                yield from response.iter_bytes()
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None

    def pipelines(self) -> builtins.list[dict[str, Any]]:
        return self._json("GET", "/api/pipelines")["pipelines"]

    def stats(self) -> dict[str, Any]:
        return self._json("GET", "/api/stats")

    def notifications(self, *, mark_seen: bool = True) -> builtins.list[dict[str, Any]]:
        params = {"mark_seen": str(mark_seen).lower()}
        return self._json("GET", "/api/notifications", params=params)["notifications"]


def _error(response: httpx.Response) -> APIError:
    try:
        problem = response.json()
        if not isinstance(problem, dict):
            problem = {"detail": str(problem)}
    except ValueError:
        problem = {"detail": f"{response.reason_phrase}, and the answer is not Conveyor's JSON; is CONVEYOR_URL "
                             f"the address of a Conveyor server?"}
    error = APIError(response.status_code, problem)
    if "Retry-After" in response.headers:
        try:
            error.retry_after = float(response.headers["Retry-After"])
        except ValueError:
            pass
    return error
