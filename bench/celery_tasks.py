"""Celery's side of ``bench/engine.py``: the same 4-stage chain, Redis broker and Redis result backend.

A durable peer: tasks are acknowledged after they run (``acks_late``), and each chain's result is
read from the result backend. Run by ``celery -A bench.celery_tasks worker``.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, chain

REDIS_URL = os.environ.get("CONVEYOR_BENCH_REDIS_URL", "redis://127.0.0.1:6379/10")
app = Celery("bench", broker=REDIS_URL, backend=REDIS_URL)
app.conf.update(task_acks_late=True, task_reject_on_worker_lost=True, worker_prefetch_multiplier=2,
                task_default_queue="bench_celery", broker_connection_retry_on_startup=True,
                worker_hijack_root_logger=False, result_expires=600)


@app.task(name="bench.celery_stage")
def celery_stage(value: Any, index: int = 0) -> Any:
    return value


def send_chain(value: dict[str, Any]) -> Any:
    return chain(celery_stage.s(value, 0), *(celery_stage.s(i) for i in range(1, 4))).apply_async()
