"""``@stage_actor``: a Dramatiq actor that runs as one stage of a pipeline.

A stage actor is an ordinary Dramatiq actor (it can be sent and called as usual). When
the engine runs it, exceptions do not reach Dramatiq's Retries middleware: the wrapper
hands them to the engine as a :class:`StageFailure` result, and the engine retries with
its own per-stage policy, fails the job, or tolerates the item. So Dramatiq's defaults
(20 retries over days, a 10-minute limit) never apply to stages.

A stage may declare the pydantic model of what it receives (``input=``): the wrapper
validates the message's payload before the body runs, so the body starts with typed
fields, and a malformed payload fails the stage at once as :class:`InvalidInput`, named
after the stage.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dramatiq
from pydantic import BaseModel, ValidationError

from actors.binding import DeferredActor
from actors.context import _current
from actors.errors import InvalidInput


@dataclass(frozen=True)
class RetryPolicy:
    """How one stage retries: bounded attempts, exponential backoff with jitter, time limits (all s).

    A stage actor's own policy is these defaults with the settings given to ``@stage_actor``; a
    pipeline step (``stage(...)``, ``fan_out(...)``) may override each field again.
    """

    retries: int = 3  #: transient failures retried this many times
    min_backoff: float = 1.0  #: s, first retry delay (doubled each time, with jitter)
    max_backoff: float = 300.0  #: s
    time_limit: float = 600.0  #: s per attempt
    max_wait: float = 3600.0  #: s a stage may spend waiting in poll-later and rate-limit pauses

    def overridden(self, **settings: float | None) -> RetryPolicy:
        """This policy with each given setting replaced (None keeps the current value).

        Raises:
          TypeError: for a name that is not a setting of the policy.
        """
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(settings) - names)
        if unknown:
            raise TypeError(f"unknown retry setting {', '.join(unknown)}; the settings are {', '.join(sorted(names))}")
        given: dict[str, Any] = {name: value for name, value in settings.items() if value is not None}
        if "retries" in given:
            given["retries"] = int(given["retries"])
        return dataclasses.replace(self, **given) if given else self


@dataclass
class StageFailure:
    """The result a stage actor returns to the engine instead of raising."""

    exception: BaseException


class StageActor(DeferredActor):
    """A stage's Dramatiq actor, with its own retry policy and, optionally, the model of its input."""

    defaults: RetryPolicy = RetryPolicy()
    input_model: type[BaseModel] | None = None


def actor_policy(actor: dramatiq.Actor) -> RetryPolicy:
    """An actor's own policy: a stage actor's, or the defaults for a plain Dramatiq actor."""
    return actor.defaults if isinstance(actor, StageActor) else RetryPolicy()


def _problems(error: ValidationError) -> str:
    """``field: message`` for each of a validation error's problems, on one line."""
    parts = []
    for problem in error.errors(include_url=False, include_input=False):
        where = ".".join(str(p) for p in problem["loc"])
        message = str(problem["msg"]).removeprefix("Value error, ")  # a model's own check says it all
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


def validated_input(stage: str, model: type[BaseModel], value: Any) -> BaseModel:
    """``value`` (a message's payload) as an instance of ``model``.

    Raises:
      InvalidInput: when it is not a JSON object, or does not satisfy the model; the message names ``stage``.
    """
    if isinstance(value, model):
        return value
    if not isinstance(value, dict):
        raise InvalidInput(f"{stage} expects a JSON object, got {type(value).__name__}")
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise InvalidInput(f"{stage} got an invalid input: {_problems(exc)}") from None


def _with_validated_input(func: Callable[..., Any], stage: str, model: type[BaseModel]) -> Callable[..., Any]:
    """``func`` with its first argument (given by position or by name) validated as ``model``."""
    first = next(iter(inspect.signature(func).parameters), None)
    if first is None:
        raise TypeError(f"stage {stage} declares an input model but takes no argument")

    @functools.wraps(func)
    def call(*args: Any, **kwargs: Any) -> Any:
        if args:
            args = (validated_input(stage, model, args[0]), *args[1:])
        elif first in kwargs:
            kwargs[first] = validated_input(stage, model, kwargs[first])
        return func(*args, **kwargs)

    return call


def stage_actor(
    fn: Callable[..., Any] | None = None,
    *,
    actor_name: str | None = None,
    queue_name: str = "default",
    input: type[BaseModel] | None = None,  # noqa: A002 - the word a stage's author reads
    **policy: float | None,
) -> Any:
    """Declare a stage actor. Its broker is bound later, by ``pipelines.worker.setup``.

    Parameters:
      input: the pydantic model of the payload the stage receives (the job's input, the previous step's
        output, or one fan-out item). The body is then called with an instance of it; a payload that is
        not a JSON object or does not satisfy it fails the stage at once (``invalid_input``, no retries).
        Without it the body receives the payload as it is.
      policy: the stage's :class:`RetryPolicy` settings (``retries``, ``min_backoff``, ``max_backoff``,
        ``time_limit``, ``max_wait``; times in seconds), each defaulting to the policy's own.
    """
    defaults = RetryPolicy().overridden(**policy)

    def decorate(func: Callable[..., Any]) -> StageActor:
        name = actor_name or func.__name__
        body = _with_validated_input(func, name, input) if input is not None else func

        @functools.wraps(func)
        def run(*args: Any, **kwargs: Any) -> Any:
            ctx = _current.get()
            if ctx is None or not getattr(ctx, "managed", False):
                return body(*args, **kwargs)
            try:
                return body(*args, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - the engine classifies every failure
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    raise
                return StageFailure(exc)

        actor = StageActor(run, actor_name=name, queue_name=queue_name, options={
            "max_retries": 0,
            "notify_shutdown": True,  # a stopping worker hands its stages back instead of losing them
            "time_limit": int(defaults.time_limit * 1000),
        })
        actor.defaults = defaults
        actor.input_model = input
        return actor

    return decorate(fn) if fn is not None else decorate
