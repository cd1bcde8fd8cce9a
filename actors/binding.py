"""Actors declared at import and bound to a broker later, by the composition root.

``dramatiq.actor`` binds an actor to the global broker when its module is imported, so the broker
must exist first and importing an actor module has a side effect. A :class:`DeferredActor` is the
same Dramatiq actor without that: its module only declares it, and
:func:`pipelines.worker.setup` binds it to the broker it built. Binding again (a test's new broker)
moves it; sending an unbound actor is a clear error, never a message to a default broker.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import dramatiq
from dramatiq.logging import get_logger

FnT = TypeVar("FnT", bound=Callable[..., Any])


class NotBound(RuntimeError):
    """An actor was sent before the composition root bound it to a broker."""


class _NoBroker:
    """Where an unbound actor's messages would go: nowhere, loudly."""

    def __init__(self, actor_name: str) -> None:
        self.actor_name = actor_name

    def enqueue(self, message: dramatiq.Message, *, delay: int | None = None) -> dramatiq.Message:
        raise NotBound(f"actor {self.actor_name!r} is not bound to a broker: call pipelines.worker.setup() first")


class DeferredActor(dramatiq.Actor):
    """A Dramatiq actor whose broker is given by :meth:`bind`, not found at declaration."""

    def __init__(self, fn: Callable[..., Any], *, actor_name: str, queue_name: str = "default",
                 priority: int = 0, options: dict[str, Any] | None = None) -> None:
        # dramatiq.Actor.__init__ declares the actor on a broker at once; this does the rest of its work.
        self.logger = get_logger(fn.__module__ or "_", actor_name)
        self.fn = fn
        self.actor_name = actor_name
        self.queue_name = queue_name
        self.priority = priority
        self.options = dict(options or {})
        self.broker = _NoBroker(actor_name)  # type: ignore[assignment]

    def bind(self, broker: dramatiq.Broker) -> None:
        """Declare this actor on ``broker`` (replacing an actor of the same name there)."""
        unknown = set(self.options) - broker.actor_options
        if unknown:
            raise ValueError(f"actor {self.actor_name!r} has options no middleware of the broker knows: "
                             f"{sorted(unknown)}")
        self.broker = broker
        broker.declare_actor(self)

    @property
    def bound(self) -> bool:
        return not isinstance(self.broker, _NoBroker)


def deferred_actor(*, actor_name: str | None = None, queue_name: str = "default", priority: int = 0,
                   actor_class: type[DeferredActor] = DeferredActor,
                   **options: Any) -> Callable[[Callable[..., Any]], DeferredActor]:
    """``@dramatiq.actor`` with the broker given later (see :meth:`DeferredActor.bind`)."""

    def decorate(fn: Callable[..., Any]) -> DeferredActor:
        return actor_class(fn, actor_name=actor_name or fn.__name__, queue_name=queue_name, priority=priority,
                           options=options)

    return decorate
