"""Jobs and their state: pipeline definitions, the job store, the runner and the reconciler.

Importing this package sets up the broker, installs the engine's middleware and registers
every pipeline, so ``dramatiq pipelines`` starts a complete worker.
"""

from actors.broker import broker
from pipelines.tracking import StageTracking

if not any(isinstance(m, StageTracking) for m in broker.middleware):
    broker.add_middleware(StageTracking())

from pipelines import (  # noqa: E402,F401
    builtin,  # registers the built-in pipelines
    stats,  # worker presence for /api/stats (installed below)
    webhooks,  # the finished-job hook and the webhook delivery actor
)

stats.install(broker)
