"""Bare Dramatiq's side of ``bench/engine.py``: the same chain and fan-out with no job store.

Run by ``dramatiq bench.bare_actors``; a Redis broker of its own namespace on the benchmark's Redis.
The last stage counts finished chains in Redis, and fan-out items count themselves there to know
which one joins (the engine counts both in its job store).
"""

from __future__ import annotations

import os
import time

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker

REDIS_URL = os.environ.get("CONVEYOR_BENCH_REDIS_URL", "redis://127.0.0.1:6379/10")
broker = RedisBroker(url=REDIS_URL, namespace="bare")
dramatiq.set_broker(broker)
client = redis.Redis.from_url(REDIS_URL)


@dramatiq.actor(max_retries=0)
def bare_stage(run_id: str, index: int, work: float, last: bool) -> None:
    if work:
        client.rpush("bench:marks", f"{run_id} {index} {time.time()}")
        time.sleep(work)
    if last:
        client.incr("bench:done")


@dramatiq.actor(max_retries=0)
def bare_item(run_id: str, total: int) -> None:
    if client.incr(f"bench:items:{run_id}") == total:  # the last item joins into one more stage
        bare_stage.send(run_id, 99, 0.0, True)


def send_chain(run_id: str, work: float) -> None:
    dramatiq.pipeline([bare_stage.message_with_options(args=(run_id, i, work, i == 3), pipe_ignore=True)
                       for i in range(4)], broker=broker).run()


def send_fanout(run_id: str, items: int) -> None:
    for _ in range(items):
        bare_item.send(run_id, items)
