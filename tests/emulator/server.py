"""A local HTTP server that speaks provider APIs, for testing cloud providers without the internet.

Provider modules (``tests/emulator/<provider>.py``) are Flask blueprints registered on an
:class:`Emulator`, which serves them on 127.0.0.1 at an OS-assigned port from a thread. The
emulator records every request (:attr:`Emulator.calls`) and answers faults on demand
(:meth:`Emulator.fail_next`: 429 with ``Retry-After``, 5xx, 4xx) before the blueprint sees them.
:class:`JobStore` is the shared piece of "create, then poll" APIs (Luma, Replicate, D-ID).
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Flask, Response, jsonify, request
from werkzeug.serving import BaseWSGIServer, make_server

#: s; how often the serving loop checks for shutdown (bounds how long ``stop()`` takes).
POLL_INTERVAL = 0.02
#: s; how long :meth:`Emulator.stop` waits for the serving thread.
STOP_TIMEOUT = 5.0


@dataclass(frozen=True)
class Call:
    """One request the emulator received (file contents are not kept, only field names and sizes)."""

    method: str
    path: str
    headers: dict[str, str]  #: lower-case names
    query: dict[str, str]
    json: Any = None  #: the parsed JSON body, when the body was JSON
    form: tuple[str, ...] = ()  #: form field names (urlencoded or multipart)
    files: dict[str, int] = field(default_factory=dict)  #: multipart file field -> size in bytes
    body_size: int = 0  #: bytes
    fault: int | None = None  #: the status of an injected fault that answered this call

    @property
    def fields(self) -> tuple[str, ...]:
        """Top-level field names of the body, whatever its encoding."""
        names = list(self.json) if isinstance(self.json, dict) else []
        return tuple(sorted({*names, *self.form, *self.files}))


@dataclass
class _Fault:
    path_prefix: str
    status: int
    headers: dict[str, str]
    body: Any
    remaining: int
    method: str | None


class Emulator:
    """A running emulator: a Flask app with provider blueprints, served on a thread.

    Parameters:
      blueprints: provider blueprints to register (before the first request).
    """

    def __init__(self, *blueprints: Blueprint) -> None:
        self.app = Flask("conveyor-emulator")
        self.calls: list[Call] = []
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()
        self.app.before_request(self._record_and_maybe_fail)
        for blueprint in blueprints:
            self.app.register_blueprint(blueprint)
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> Emulator:
        """Listen on 127.0.0.1 at a free port and serve from a daemon thread."""
        self._server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.base_url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(POLL_INTERVAL,), name="emulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT)
        self._server = None

    def __enter__(self) -> Emulator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def url(self, path: str) -> str:
        return self.base_url + path

    # -- faults and records -----------------------------------------------------------------------
    def fail_next(
        self,
        path_prefix: str,
        status: int,
        headers: dict[str, str] | None = None,
        body: Any = None,
        times: int = 1,
        *,
        method: str | None = None,
    ) -> None:
        """Answer the next ``times`` requests whose path starts with ``path_prefix`` with ``status``.

        ``body`` may be a dict (sent as JSON), a string or bytes; by default a small JSON error.
        ``method`` restricts the fault to one HTTP method. Faults are consumed first-added first.
        """
        with self._lock:
            self._faults.append(
                _Fault(
                    path_prefix, status, dict(headers or {}), body, times, method.upper() if method else None
                )
            )

    def calls_to(self, path_prefix: str, method: str | None = None) -> list[Call]:
        """The recorded calls whose path starts with ``path_prefix`` (and of ``method``, if given)."""
        with self._lock:
            return [
                c
                for c in self.calls
                if c.path.startswith(path_prefix) and (method is None or c.method == method.upper())
            ]

    def reset(self) -> None:
        """Forget recorded calls and pending faults."""
        with self._lock:
            self.calls.clear()
            self._faults.clear()

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        for fault in self._faults:
            if path.startswith(fault.path_prefix) and fault.method in (None, method):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    def _record_and_maybe_fail(self) -> Response | None:
        body_json = request.get_json(silent=True) if request.is_json else None
        form: tuple[str, ...] = ()
        files: dict[str, int] = {}
        if request.mimetype in ("multipart/form-data", "application/x-www-form-urlencoded"):
            form = tuple(request.form.keys())
            files = {name: len(f.read()) for name, f in request.files.items()}
            for f in request.files.values():
                f.seek(0)  # the blueprint reads the upload again
        else:
            request.get_data(cache=True)
        with self._lock:
            fault = self._take_fault(request.method, request.path)
            self.calls.append(
                Call(
                    method=request.method,
                    path=request.path,
                    headers={k.lower(): v for k, v in request.headers.items()},
                    query=dict(request.args.items()),
                    json=body_json,
                    form=form,
                    files=files,
                    body_size=request.content_length or 0,
                    fault=fault.status if fault else None,
                )
            )
        if fault is None:
            return None
        return _fault_response(fault)


def _fault_response(fault: _Fault) -> Response:
    body = fault.body
    if body is None:
        body = {"error": {"status": fault.status, "message": "fault injected by the emulator"}}
    response = jsonify(body) if isinstance(body, dict | list) else Response(body)
    response.status_code = fault.status
    for name, value in fault.headers.items():
        response.headers[name] = value
    return response


def start_emulator(*blueprints: Blueprint) -> Emulator:
    """Register ``blueprints`` on a new emulator and start serving it; call ``.stop()`` when done."""
    return Emulator(*blueprints).start()


# -- create, then poll ---------------------------------------------------------------------------

#: Generic job states; each provider blueprint maps them to its own words.
PENDING, RUNNING, DONE, FAILED, CANCELED = "pending", "running", "done", "failed", "canceled"


@dataclass
class EmulatedJob:
    """One job of an emulated asynchronous API."""

    id: str
    input: Any
    created_at: float  #: s, on the store's clock
    polls_needed: int | None
    seconds_needed: float | None
    fail_with: str | None = None  #: when set, the job ends ``failed`` with this message
    status: str = PENDING
    polls: int = 0
    result: Any = None
    error: str | None = None

    @property
    def finished(self) -> bool:
        return self.status in (DONE, FAILED, CANCELED)


class JobStore:
    """Jobs that become done after ``done_after_polls`` polls or ``done_after_seconds``, whichever first.

    With neither set, a job is done at its first poll. ``result`` builds a finished job's result
    from the job (default: ``{"output": "<id>"}``). ``clock`` is injectable so tests need not sleep.
    Thread-safe: the emulator serves requests on several threads.
    """

    def __init__(
        self,
        *,
        done_after_polls: int | None = 2,
        done_after_seconds: float | None = None,
        result: Callable[[EmulatedJob], Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
        id_prefix: str = "",
    ) -> None:
        self.done_after_polls = done_after_polls
        self.done_after_seconds = done_after_seconds
        self._result = result or (lambda job: {"output": job.id})
        self._clock = clock
        self._id_prefix = id_prefix
        self._jobs: dict[str, EmulatedJob] = {}
        self._lock = threading.Lock()
        self._counter = itertools.count(1)

    def create(
        self,
        input: Any = None,
        *,
        fail_with: str | None = None,
        polls_needed: int | None = None,
        seconds_needed: float | None = None,
    ) -> EmulatedJob:
        """Start a job; per-job ``polls_needed``/``seconds_needed`` override the store's defaults."""
        with self._lock:
            job = EmulatedJob(
                id=f"{self._id_prefix}{next(self._counter)}-{uuid.uuid4().hex[:12]}",
                input=input,
                created_at=self._clock(),
                polls_needed=self.done_after_polls if polls_needed is None else polls_needed,
                seconds_needed=self.done_after_seconds if seconds_needed is None else seconds_needed,
                fail_with=fail_with,
            )
            self._jobs[job.id] = job
            return job

    def get(self, job_id: str) -> EmulatedJob | None:
        """The job as it stands, advanced by time but without counting a poll."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None:
                self._advance(job)
            return job

    def poll(self, job_id: str) -> EmulatedJob | None:
        """Count one poll of the job and advance it; None for an unknown id."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return None
            if not job.finished:
                job.polls += 1
            self._advance(job)
            return job

    def cancel(self, job_id: str) -> EmulatedJob | None:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None and not job.finished:
                job.status = CANCELED
            return job

    def jobs(self) -> list[EmulatedJob]:
        with self._lock:
            return list(self._jobs.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._jobs)

    def _advance(self, job: EmulatedJob) -> None:
        if job.finished:
            return
        if self._is_due(job):
            if job.fail_with is not None:
                job.status, job.error = FAILED, job.fail_with
            else:
                job.status, job.result = DONE, self._result(job)
        elif job.polls > 0 or (job.seconds_needed is not None and self._clock() > job.created_at):
            job.status = RUNNING

    def _is_due(self, job: EmulatedJob) -> bool:
        if job.polls_needed is None and job.seconds_needed is None:
            return job.polls > 0
        by_polls = job.polls_needed is not None and job.polls >= job.polls_needed
        by_time = job.seconds_needed is not None and self._clock() - job.created_at >= job.seconds_needed
        return by_polls or by_time


class JobsBlueprint(Blueprint):
    """A provider's routes together with the job store they serve, which tests read and steer."""

    def __init__(self, name: str, import_name: str, jobs: JobStore) -> None:
        super().__init__(name, import_name)
        self.jobs = jobs
