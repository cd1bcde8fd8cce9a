"""Small built-in stages for tests, benchmarks and trying the engine: they sleep or fail on request."""

from __future__ import annotations

import time
from typing import Any

from actors.context import current_stage
from actors.errors import PermanentError, TransientError
from actors.stage import stage_actor


@stage_actor(retries=3, min_backoff=0.05, max_backoff=1.0, time_limit=120.0)
def demo_prepare(request: dict[str, Any]) -> list[dict[str, Any]]:
    """Split the request into ``items`` work items."""
    ctx = current_stage()
    wait = float(request.get("wait_seconds", 0))
    if wait:
        # Stand-in for an external job: remember when it "started", then poll until done.
        started = ctx.saved("started_at") or ctx.checkpoint("started_at", time.time())
        if time.time() < started + wait:
            ctx.progress(min(0.99, (time.time() - started) / wait), "Waiting for the external job")
            ctx.poll_later(min(0.2, wait))
    fail, warn = set(request.get("fail_items", [])), set(request.get("warn_items", []))
    return [
        {"index": i, "sleep": float(request.get("sleep", 0)), "fail": i in fail,
         "fail_mode": request.get("fail_mode", "permanent"), "fail_times": int(request.get("fail_times", 1)),
         **({"warn": True} if i in warn else {})}
        for i in range(int(request.get("items", 3)))
    ]


@stage_actor(retries=3, min_backoff=0.05, max_backoff=1.0, time_limit=120.0)
def demo_work(item: dict[str, Any]) -> dict[str, Any]:
    """Sleep in small steps, reporting progress; warn and fail as the item asks."""
    ctx = current_stage()
    total = ctx.items_total or 1
    steps = 5
    for n in range(steps):
        ctx.progress(n / steps, f"Working on item {item['index'] + 1} of {total}")
        time.sleep(item["sleep"] / steps)
    if item.get("warn"):
        ctx.warn("demo_warning", f"item {item['index']} made do")
    if item["fail"]:
        if item["fail_mode"] == "transient" and ctx.attempt <= item["fail_times"]:
            raise TransientError(f"item {item['index']} failed on attempt {ctx.attempt}")
        if item["fail_mode"] == "permanent":
            raise PermanentError(f"item {item['index']} cannot be done", code="demo_failure")
    return {"index": item["index"], "square": item["index"] ** 2, "attempt": ctx.attempt}


@stage_actor(time_limit=60.0)
def demo_count(items: list[Any]) -> dict[str, Any]:
    ok = [i for i in items if "error" not in i]
    return {"done": len(ok), "failed": len(items) - len(ok), "sum": sum(i["square"] for i in ok)}


@stage_actor(time_limit=60.0)
def demo_double(summary: dict[str, Any]) -> int:
    return summary["sum"] * 2


@stage_actor(time_limit=60.0)
def demo_negate(summary: dict[str, Any]) -> int:
    return -summary["sum"]


@stage_actor(time_limit=60.0)
def demo_merge(branches: dict[str, Any]) -> dict[str, Any]:
    return {"double": branches["double"], "negated": branches["negated"]}


@stage_actor(retries=0, time_limit=60.0)
def noop(value: Any) -> Any:
    """Does nothing: the engine's own cost, for benchmarks."""
    return value


@stage_actor(retries=0, time_limit=60.0)
def noop_items(request: dict[str, Any]) -> list[int]:
    return list(range(int(request.get("items", 100))))
