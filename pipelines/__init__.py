"""Jobs and their state: pipeline definitions, the job store, the runner and the reconciler.

Importing this package sets up the broker, installs the engine's middleware and registers
every pipeline, so ``dramatiq pipelines`` starts a complete worker.
"""

from dramatiq.middleware import Retries, TimeLimit

from actors.broker import broker
from conveyor.config import settings
from conveyor.logs import configure_logging, use_json_logs
from pipelines.tracking import StageTracking

if use_json_logs():
    configure_logging()
if not any(isinstance(m, StageTracking) for m in broker.middleware):
    # Ahead of TimeLimit and ShutdownNotifications, so its after-hook runs once they have let go of
    # the thread: an interrupt raised while it records a finished stage would lose that record.
    broker.add_middleware(StageTracking(), before=TimeLimit)
if settings().worker_metrics:
    from dramatiq.middleware.prometheus import Prometheus

    if not any(isinstance(m, Prometheus) for m in broker.middleware):
        broker.add_middleware(Prometheus())  # message counts and durations, served by each worker on :9191

from pipelines import (  # noqa: E402,F401
    audio,  # lecture_notes, noise_removal, audio_clean, subtitles
    builtin,  # registers the built-in pipelines
    stats,  # worker presence for /api/stats (installed below)
    visual,  # video_generation, persona, talking_video, color_grade, roto
    webhooks,  # the finished-job hook and the webhook delivery actor
)

stats.install(broker)
if not any(isinstance(m, webhooks.WebhookOutcomes) for m in broker.middleware):
    broker.add_middleware(webhooks.WebhookOutcomes(), before=Retries)  # after-hooks run in reverse order


def _import_pipeline_modules() -> None:
    """Import the modules named in CONVEYOR_PIPELINES, where developers declare their own pipelines."""
    import importlib

    for name in settings().pipeline_modules:
        importlib.import_module(name)


_import_pipeline_modules()
