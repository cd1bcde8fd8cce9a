"""Callbacks run when a job reaches a terminal status, inside the transaction that finished it.

A hook gets the job as a :class:`pipelines.store.jobrow.JobRow` (read and assign fields as on ``Job``;
assignments are saved with that transaction). It may add stage-free messages to the outbox (for
example a webhook delivery), which are then sent after the commit like every other message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from pipelines.engine.dispatch import Outbox
from pipelines.store.jobrow import JobRow

JobFinishedHook = Callable[[Session, JobRow, Outbox], None]
_job_finished: list[JobFinishedHook] = []
#: Hooks that act only on jobs with a ``webhook_url``: the engine's fast path leaves such jobs to them.
_webhook_only: set[JobFinishedHook] = set()


def on_job_finished(hook: JobFinishedHook | None = None, *, only_with_webhook_url: bool = False) -> Any:
    """Register ``hook`` (usable as a decorator, bare or with options).

    ``only_with_webhook_url``: the hook does nothing for a job without a ``webhook_url``. Jobs that
    complete while only such hooks are registered may be finished by the store alone (see
    :mod:`pipelines.engine.handoff`); any other hook makes every finish run in Python.
    """
    def register(fn: JobFinishedHook) -> JobFinishedHook:
        if fn not in _job_finished:
            _job_finished.append(fn)
        if only_with_webhook_url:
            _webhook_only.add(fn)
        return fn

    return register(hook) if hook is not None else register


def finish_needs_no_python() -> bool:
    """Whether a job without a ``webhook_url`` may finish with no hook run."""
    return all(hook in _webhook_only for hook in _job_finished)


def job_finished(session: Session, job: JobRow, outbox: Outbox) -> None:
    for hook in _job_finished:
        hook(session, job, outbox)
