"""The stage context: how a running stage reports progress and keeps checkpoints.

The engine sets a :class:`StageContext` for each stage message it runs (through a
context variable set by its middleware); actors only call :func:`current_stage`. Outside
the engine (a plain call, a test) the context is a harmless stand-in that keeps values (and
warnings) in memory, so actors stay plain functions.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from actors.errors import PollLater

MAX_WARNING_CODE = 64  #: characters of a warning's code kept
MAX_WARNING_MESSAGE = 500  #: characters of a warning's message kept


class StageReporter(Protocol):
    """What the engine provides to a stage context. Implemented by ``pipelines``."""

    def report_progress(self, fraction: float, message: str | None) -> None: ...

    def save_checkpoint(self, values: dict[str, Any]) -> None: ...

    def warn(self, code: str, message: str) -> None: ...


class StageContext:
    """One running stage: its job, its item, its checkpoint values, its warnings and its reporter.

    Parameters:
      job_id: the job this stage belongs to (used to name output files).
      stage: the step's name.
      item: the fan-out item index, or None for a plain stage.
      attempt: 1 for the first run, 2 after one retry, ...
      checkpoint: values saved by earlier attempts of this same stage.
    """

    def __init__(
        self,
        *,
        job_id: str = "local",
        stage: str = "local",
        item: int | None = None,
        items_total: int | None = None,
        attempt: int = 1,
        checkpoint: dict[str, Any] | None = None,
        reporter: StageReporter | None = None,
        managed: bool = False,
    ) -> None:
        self.job_id = job_id
        self.stage = stage
        self.item = item
        self.items_total = items_total
        self.attempt = attempt
        self._checkpoint = dict(checkpoint or {})
        self._reporter = reporter
        #: ``{"code", "message"}`` of each :meth:`warn` of this run, in order
        self.warnings: list[dict[str, str]] = []
        #: True when the engine runs this stage: failures go to the engine, not to Dramatiq.
        self.managed = managed

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Report this stage's own progress, 0.0–1.0, with a human message. Cheap: writes are throttled.

        Raises:
          JobCanceled: when the job was canceled meanwhile, so the stage stops early.
        """
        if self._reporter is not None:
            self._reporter.report_progress(min(1.0, max(0.0, float(fraction))), message)

    def saved(self, key: str, default: Any = None) -> Any:
        """A checkpoint value saved by this stage earlier (possibly by an attempt that crashed)."""
        return self._checkpoint.get(key, default)

    def checkpoint(self, key: str, value: Any) -> Any:
        """Save ``value`` (JSON) durably before going on, e.g. a provider's job id. Returns it."""
        self._checkpoint[key] = value
        if self._reporter is not None:
            self._reporter.save_checkpoint(dict(self._checkpoint))
        return value

    def warn(self, code: str, message: str) -> None:
        """Say that the stage could not do all that was asked and made do (e.g. no face was found in a
        photo): the job still completes, and lists ``{"code", "message", "stage"}`` in its ``warnings``.

        Written at once (a rare event); the same warning twice, e.g. from a retried attempt, is kept once.
        """
        warning = {"code": code[:MAX_WARNING_CODE], "message": message[:MAX_WARNING_MESSAGE]}
        if warning in self.warnings:
            return
        self.warnings.append(warning)
        if self._reporter is not None:
            self._reporter.warn(code, message)

    def poll_later(self, delay: float) -> None:
        """Stop now and run this stage again in ``delay`` seconds, spending no retry.

        Save what the next run needs with :meth:`checkpoint` first.
        """
        raise PollLater(delay)


_current: contextvars.ContextVar[StageContext | None] = contextvars.ContextVar("conveyor_stage", default=None)


def current_stage() -> StageContext:
    """The context of the stage running in this thread (a stand-in outside the engine)."""
    ctx = _current.get()
    if ctx is None:
        ctx = StageContext()
        _current.set(ctx)
    return ctx


@contextmanager
def stage_context(ctx: StageContext) -> Iterator[StageContext]:
    """Make ``ctx`` the current stage context for the duration of the block."""
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)


def set_stage_context(ctx: StageContext | None) -> None:
    """Set (or clear, with None) the current context; used by the engine's middleware hooks."""
    _current.set(ctx)
