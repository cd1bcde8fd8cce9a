"""``@stage_actor``: a Dramatiq actor that runs as one stage of a pipeline.

A stage actor is an ordinary Dramatiq actor (it can be sent and called as usual). When
the engine runs it, exceptions do not reach Dramatiq's Retries middleware: the wrapper
hands them to the engine as a :class:`StageFailure` result, and the engine retries with
its own per-stage policy, fails the job, or tolerates the item. So Dramatiq's defaults
(20 retries over days, a 10-minute limit) never apply to stages.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dramatiq

from actors.binding import DeferredActor
from actors.context import _current


@dataclass(frozen=True)
class StageDefaults:
    """A stage actor's own policy; a pipeline step may override each field."""

    retries: int = 3  #: transient failures retried this many times
    min_backoff: float = 1.0  #: s, first retry delay (doubled each time, with jitter)
    max_backoff: float = 300.0  #: s
    time_limit: float = 600.0  #: s per attempt
    max_wait: float = 3600.0  #: s a stage may spend waiting in poll-later and rate-limit pauses


@dataclass
class StageFailure:
    """The result a stage actor returns to the engine instead of raising."""

    exception: BaseException


class StageActor(DeferredActor):
    """A stage's Dramatiq actor, with its own retry policy (see :class:`StageDefaults`)."""

    defaults: StageDefaults = StageDefaults()


def stage_defaults(actor: dramatiq.Actor) -> StageDefaults:
    """An actor's own policy: a stage actor's, or the defaults for a plain Dramatiq actor."""
    return actor.defaults if isinstance(actor, StageActor) else StageDefaults()


def stage_actor(
    fn: Callable[..., Any] | None = None,
    *,
    actor_name: str | None = None,
    queue_name: str = "default",
    retries: int = 3,
    min_backoff: float = 1.0,
    max_backoff: float = 300.0,
    time_limit: float = 600.0,
    max_wait: float = 3600.0,
) -> Any:
    """Declare a stage actor. Times are in seconds. Its broker is bound later, by ``pipelines.worker.setup``.

    Parameters:
      retries: how often a transient failure is retried before the stage fails.
      min_backoff, max_backoff: bounds of the exponential retry delay.
      time_limit: the longest one attempt may run.
      max_wait: the longest the stage may wait on a provider (poll-later, 429 pauses).
    """

    def decorate(func: Callable[..., Any]) -> StageActor:
        @functools.wraps(func)
        def run(*args: Any, **kwargs: Any) -> Any:
            ctx = _current.get()
            if ctx is None or not getattr(ctx, "managed", False):
                return func(*args, **kwargs)
            try:
                return func(*args, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - the engine classifies every failure
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    raise
                return StageFailure(exc)

        actor = StageActor(run, actor_name=actor_name or func.__name__, queue_name=queue_name, options={
            "max_retries": 0,
            "notify_shutdown": True,  # a stopping worker hands its stages back instead of losing them
            "time_limit": int(time_limit * 1000),
        })
        actor.defaults = StageDefaults(retries, min_backoff, max_backoff, time_limit, max_wait)
        return actor

    return decorate(fn) if fn is not None else decorate
