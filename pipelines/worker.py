"""The composition root: the one place a Conveyor process is put together.

Importing ``pipelines`` or an actor module declares things and does nothing else. :func:`setup`
then builds the broker the configuration asks for (starting an embedded Redis when there is no
``REDIS_URL``), installs the middleware in one ordered list, collects the pipelines into the
process's registry, binds their actors to the broker, installs the finished-job hooks and the
logging set-up. Every process calls it once at its start:

- the worker: ``dramatiq pipelines.worker:setup`` (the Procfile's ``worker`` line);
- the web app: :func:`web.app.create_app` (through :func:`ensure_setup`);
- the CLI commands that send messages (``conveyor clock``, ``conveyor reconcile``, ``conveyor demo``).

A module named in ``CONVEYOR_PIPELINES`` declares pipelines at its top level; it may also define
``configure_broker(broker)``, called once the broker is built (to add a middleware of its own).
Tests call :func:`setup` with a broker of their own, and :func:`add_pipeline` for a pipeline they declare.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Iterable
from types import ModuleType

import dramatiq
from dramatiq.middleware import Retries, TimeLimit

from actors.binding import DeferredActor
from actors.broker.build import create_broker, current_broker
from actors.stages.webhooks import deliver_webhook
from conveyor.config import settings
from conveyor.logs import configure_logging, use_json_logs
from pipelines.definition import Pipeline, Registry, current_registry, use_registry
from pipelines.engine import hooks
from pipelines.engine.tracking import StageTracking, quiet_expected_warnings
from pipelines.services import stats, webhooks

logger = logging.getLogger(__name__)

#: The modules that declare the built-in pipelines; ``CONVEYOR_PIPELINES`` adds the developer's own.
BUILTIN_PIPELINE_MODULES = ("pipelines.catalog.audio", "pipelines.catalog.visual", "pipelines.catalog.builtin")

_set_up: dramatiq.Broker | None = None

#: Actors that are not a pipeline's stage but every process must be able to send and run.
SERVICE_ACTORS: tuple[DeferredActor, ...] = (deliver_webhook,)


def setup(broker: dramatiq.Broker | None = None) -> dramatiq.Broker:
    """Build this process's broker (or take ``broker``), wire everything to it, and make it current.

    Returns the broker, which is also Dramatiq's global broker from now on.
    """
    config = settings()
    if use_json_logs():
        configure_logging()
    quiet_expected_warnings()
    broker = broker if broker is not None else create_broker(config)
    install_middleware(broker, metrics=config.worker_metrics)
    if config.pipeline_modules and os.getcwd() not in sys.path and "" not in sys.path:
        # A developer's module sits in the project folder: found there by `conveyor dev` and `demo` as
        # by `dramatiq` and gunicorn, which put the working folder on the path themselves.
        sys.path.insert(0, os.getcwd())
    modules = [importlib.import_module(name) for name in (*BUILTIN_PIPELINE_MODULES, *config.pipeline_modules)]
    registry = Registry(collect_pipelines(modules))
    use_registry(registry)
    for actor in {*SERVICE_ACTORS, *(a for p in registry.all() for a in p.actors())}:
        _bind(actor, broker)
    for module in modules:
        configure_broker = getattr(module, "configure_broker", None)
        if callable(configure_broker):
            configure_broker(broker)  # a pipelines module's own middleware, say
    hooks.on_job_finished(webhooks.queue_delivery, only_with_webhook_url=True)
    dramatiq.set_broker(broker)
    global _set_up
    _set_up = broker
    return broker


def ensure_setup() -> dramatiq.Broker:
    """This process's broker: the one :func:`setup` built, or a new one when it has not run yet."""
    return _set_up if _set_up is not None else setup()


def install_middleware(broker: dramatiq.Broker, *, metrics: bool = False) -> None:
    """The engine's middleware, each at its place in the broker's list (once, however often called)."""
    have = {type(m) for m in broker.middleware}
    # Ahead of TimeLimit and ShutdownNotifications, so its after-hook runs once they have let go of
    # the thread: an interrupt raised while it records a finished stage would lose that record.
    if StageTracking not in have:
        broker.add_middleware(StageTracking(), before=TimeLimit)
    # Ahead of Retries: after-hooks run in reverse order, so it sees whether another attempt follows.
    if webhooks.WebhookOutcomes not in have:
        broker.add_middleware(webhooks.WebhookOutcomes(), before=Retries)
    if stats.WorkerPresence not in have:
        broker.add_middleware(stats.WorkerPresence())  # worker presence for /api/stats
    if metrics:
        from dramatiq.middleware.prometheus import Prometheus

        if Prometheus not in have:
            broker.add_middleware(Prometheus())  # message counts and durations, served by each worker on :9191


def collect_pipelines(modules: Iterable[ModuleType]) -> list[Pipeline]:
    """Every :class:`Pipeline` declared at the top level of ``modules``, each once."""
    found: dict[int, Pipeline] = {}
    for module in modules:
        for value in vars(module).values():
            if isinstance(value, Pipeline):
                found.setdefault(id(value), value)
    return list(found.values())


def add_pipeline(pipeline: Pipeline, *, replace: bool = False) -> Pipeline:
    """Add a pipeline declared after :func:`setup` (a test's own) to the current registry and broker."""
    current_registry().add(pipeline, replace=replace)
    broker = current_broker()
    for actor in pipeline.actors():
        _bind(actor, broker)
    return pipeline


def _bind(actor: dramatiq.Actor, broker: dramatiq.Broker) -> None:
    if isinstance(actor, DeferredActor):
        actor.bind(broker)
    elif actor.broker is not broker:
        raise RuntimeError(f"actor {actor.actor_name!r} is bound to another broker; declare it with @stage_actor")
