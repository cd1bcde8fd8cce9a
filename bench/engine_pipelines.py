"""The engine's side of ``bench/engine.py``: a 4-stage chain and a fan-out joined into one stage.

Named in ``CONVEYOR_PIPELINES`` for the benchmark's worker processes (``dramatiq pipelines.worker:setup``)
and its driver, whose composition root collects the two pipelines.
"""

from __future__ import annotations

import os
import time
from typing import Any

import redis

from actors.context import current_stage
from actors.stage import stage_actor
from pipelines.definition import Pipeline, fan_out, stage

client = redis.Redis.from_url(os.environ.get("CONVEYOR_BENCH_REDIS_URL", "redis://127.0.0.1:6379/10"))


@stage_actor(actor_name="bench_stage", retries=0)
def bench_stage(value: dict[str, Any]) -> dict[str, Any]:
    if value.get("work"):
        ctx = current_stage()
        client.rpush("bench:marks", f"{ctx.job_id} {ctx.stage[-1]} {time.time()}")
        time.sleep(value["work"])
    return value


@stage_actor(actor_name="bench_items", retries=0)
def bench_items(value: dict[str, Any]) -> list[int]:
    return list(range(value["items"]))


@stage_actor(actor_name="bench_noop", retries=0)
def bench_noop(value: Any) -> Any:
    return value


chain = Pipeline("bench_chain", [stage(bench_stage, name=f"stage{i}") for i in range(4)])
fanout = Pipeline("bench_fanout", [
    stage(bench_items, name="split"), fan_out(bench_noop, name="items", concurrency=0), stage(bench_noop, name="join")])
