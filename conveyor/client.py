"""A Python client of Conveyor's REST API (httpx).

    from conveyor.client import Client

    with Client("http://127.0.0.1:5000", token) as conveyor:
        audio = conveyor.upload("lecture.mp3")
        job = conveyor.submit("lecture_notes", {"audio": audio["ref"]})
        done = conveyor.wait(job["id"], progress=lambda j: print(j["progress"], j["step"]))
        print(done["result"]["summary"])

Errors from the server raise :class:`ConveyorError` carrying the problem document.
"""

from __future__ import annotations

import builtins
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import httpx

TERMINAL = ("completed", "failed", "canceled")
#: s; the default time one request may take (event streams have no read timeout).
DEFAULT_TIMEOUT = 30.0


class ConveyorError(Exception):
    """Raised when the server answers with an error; ``problem`` is its problem document."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        detail = problem.get("detail") or problem.get("title") or f"HTTP {status}"
        fields = "; ".join(f"{e.get('field')}: {e.get('message')}" for e in problem.get("errors") or [])
        super().__init__(f"{status} {detail}" + (f" ({fields})" if fields else ""))
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
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise _error(response)
        return response

    # --- jobs ------------------------------------------------------------------------------------------

    def submit(self, pipeline: str, input: dict[str, Any] | None = None, *, project_id: str | None = None,
               webhook_url: str | None = None, idempotency_key: str | None = None) -> dict[str, Any]:
        """Start a job; returns it (status ``pending``)."""
        body: dict[str, Any] = {"pipeline": pipeline, "input": input or {}}
        if project_id is not None:
            body["project_id"] = project_id
        if webhook_url is not None:
            body["webhook_url"] = webhook_url
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._request("POST", "/api/jobs", json=body, headers=headers).json()

    def get(self, job_id: str) -> dict[str, Any]:
        return self._request("GET", f"/api/jobs/{job_id}").json()

    def list(self, *, pipeline: str | None = None, status: str | None = None, project_id: str | None = None,
             limit: int = 20, cursor: str | None = None) -> dict[str, Any]:
        """One page: ``{"jobs": [...], "next_cursor": ...}``, newest first."""
        params = {k: v for k, v in {"pipeline": pipeline, "status": status, "project_id": project_id,
                                    "limit": limit, "cursor": cursor}.items() if v is not None}
        return self._request("GET", "/api/jobs", params=params).json()

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
        return self._request("POST", f"/api/jobs/{job_id}/cancel").json()

    def retry(self, job_id: str) -> dict[str, Any]:
        return self._request("POST", f"/api/jobs/{job_id}/retry").json()

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
                job, etag = response.json(), response.headers.get("ETag")
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
        response = self._request("POST", "/api/files", files={"file": (filename or "upload", file)})
        stored = response.json()
        return {**stored, "ref": f"file:{stored['id']}"}

    def download(self, file_id_or_url: str, dest: str | Path) -> Path:
        """Save a file (an id or a ``/api/files/<id>`` URL from a job result) to ``dest``."""
        path = file_id_or_url if file_id_or_url.startswith("/") else f"/api/files/{file_id_or_url}"
        target = Path(dest)
        with self._http.stream("GET", path) as response:
            if response.status_code >= 400:
                response.read()
                raise _error(response)
            with target.open("wb") as out:
                for chunk in response.iter_bytes():
                    out.write(chunk)
        return target

    def pipelines(self) -> builtins.list[dict[str, Any]]:
        return self._request("GET", "/api/pipelines").json()["pipelines"]

    def stats(self) -> dict[str, Any]:
        return self._request("GET", "/api/stats").json()

    def notifications(self, *, mark_seen: bool = True) -> builtins.list[dict[str, Any]]:
        params = {"mark_seen": str(mark_seen).lower()}
        return self._request("GET", "/api/notifications", params=params).json()["notifications"]


def _error(response: httpx.Response) -> ConveyorError:
    try:
        problem = response.json()
        if not isinstance(problem, dict):
            problem = {"detail": str(problem)}
    except ValueError:
        problem = {"detail": response.text[:200] or response.reason_phrase}
    error = ConveyorError(response.status_code, problem)
    if "Retry-After" in response.headers:
        try:
            error.retry_after = float(response.headers["Retry-After"])
        except ValueError:
            pass
    return error
