"""Test-only stages and pipelines for the reliability suite (``CONVEYOR_PIPELINES=tests.reliability.faulty``).

Worker processes and the test process both import this module, so both know the pipelines.
Every stage appends one JSON line per execution to the file named by ``CONVEYOR_TEST_EXECUTIONS``:
``start`` when it begins and ``done`` when it returns, with its job, stage, item, attempt and
process. A middleware appends a ``skipped`` line for each stage message the engine refused to run
(stale, duplicated or canceled), so a test sees which deliveries ran and which were no-ops.

Stages slow down, block on a gate file, fail or call the provider as their input asks; the provider
is Luma's API at the worker's ``LUMA_BASE_URL`` (a test points it at the emulator, tests/emulator).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dramatiq
import httpx
from dramatiq.middleware import Middleware

from actors.context import current_stage
from actors.errors import PermanentError
from actors.stage import stage_actor
from conveyor.config import settings
from pipelines.definition import Pipeline, fan_out, stage
from pipelines.engine.dispatch import JOB_OPTION, RUN_OPTION, TOKEN_OPTION

logger = logging.getLogger(__name__)

EXECUTIONS_ENV = "CONVEYOR_TEST_EXECUTIONS"
#: s; how often a working stage wakes up (to report progress, notice its gate or a shutdown).
SLICE = 0.1
#: The emulated provider's create endpoint (Luma's API shape, see tests/emulator/luma.py).
CREATE_PATH = "/dream-machine/v1/generations"


def record(event: str, **fields: Any) -> None:
    """Append one execution record; one ``write`` on an O_APPEND file, so processes do not interleave."""
    path = os.environ.get(EXECUTIONS_ENV)
    if not path:
        return
    line = json.dumps({"event": event, "pid": os.getpid(), "ts": time.time(), **fields}) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def _traced(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Record the start and the successful end of each execution of a stage function."""

    @functools.wraps(fn)
    def run(value: Any) -> Any:
        ctx = current_stage()
        key = {"job": ctx.job_id, "stage": ctx.stage, "item": -1 if ctx.item is None else ctx.item,
               "attempt": ctx.attempt}
        record("start", **key, saved=ctx.saved("provider_id"))
        logger.info("Executing stage %s item %s of job %s", ctx.stage, key["item"], ctx.job_id)
        result = fn(value)
        record("done", **key)
        return result

    return run


def _work(seconds: float, gate: str | None = None) -> float:
    """Work for ``seconds`` in short slices, reporting progress; stop early once ``gate`` exists."""
    ctx = current_stage()
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < seconds:
        if gate and Path(gate).exists():
            break
        ctx.progress(elapsed / seconds if seconds else 1.0, "Working")
        time.sleep(SLICE)
    return time.monotonic() - started


def _fail_if_flagged(request: dict[str, Any]) -> None:
    flag = request.get("fail_while")
    if flag and Path(flag).exists():
        raise PermanentError("the stage was told to fail", code="told_to_fail")


# --- plain stages ---------------------------------------------------------------------------------------


@stage_actor(actor_name="rel_begin", retries=3, min_backoff=0.1, max_backoff=0.5, time_limit=60.0)
@_traced
def rel_begin(request: dict[str, Any]) -> dict[str, Any]:
    """Pass the request on."""
    return dict(request)


@stage_actor(actor_name="rel_hold", retries=3, min_backoff=0.1, max_backoff=0.5, time_limit=300.0)
@_traced
def rel_hold(request: dict[str, Any]) -> dict[str, Any]:
    """Work ``seconds`` (or until the ``gate`` file exists); fail while the ``fail_while`` file exists."""
    _fail_if_flagged(request)
    worked = _work(float(request.get("seconds", 0)), request.get("gate"))
    return {"tag": request.get("tag"), "worked": round(worked, 2), "attempt": current_stage().attempt}


@stage_actor(actor_name="rel_end", retries=3, min_backoff=0.1, max_backoff=0.5, time_limit=60.0)
@_traced
def rel_end(value: Any) -> dict[str, Any]:
    """The job's result: everything before it, kept."""
    return {"final": value}


# --- fan-out --------------------------------------------------------------------------------------------


@stage_actor(actor_name="rel_split", retries=3, min_backoff=0.1, max_backoff=0.5, time_limit=60.0)
@_traced
def rel_split(request: dict[str, Any]) -> list[dict[str, Any]]:
    """One item per index; ``provider_items`` call the provider (which the test may make fail)."""
    calling = set(request.get("provider_items", []))
    return [
        {"index": i, "sleep": float(request.get("sleep", 0)), "gate": request.get("gate"), "provider": i in calling}
        for i in range(int(request.get("items", 3)))
    ]


@stage_actor(actor_name="rel_item", retries=2, min_backoff=0.1, max_backoff=0.3, time_limit=120.0)
@_traced
def rel_item(item: dict[str, Any]) -> dict[str, Any]:
    """Work a while; a ``provider`` item asks the provider for a generation first."""
    if item.get("provider"):
        _create_generation(f"item {item['index']}")
    _work(item["sleep"], item.get("gate"))
    return {"index": item["index"], "square": item["index"] ** 2}


# --- create, then poll ----------------------------------------------------------------------------------


def _client() -> httpx.Client:
    key = settings().secret("luma_api_key") or "reliability-test-key"
    return httpx.Client(base_url=settings().base_url("LUMA_BASE_URL"), headers={"Authorization": f"Bearer {key}"},
                        timeout=10.0)


def _create_generation(prompt: str) -> str:
    with _client() as client:
        response = client.post(CREATE_PATH, json={"prompt": prompt})
        response.raise_for_status()
        return str(response.json()["id"])


@stage_actor(actor_name="rel_render", retries=3, min_backoff=0.1, max_backoff=0.5, time_limit=120.0)
@_traced
def rel_render(request: dict[str, Any]) -> dict[str, Any]:
    """Create a provider job once (its id checkpointed first), then poll it until it is done.

    Polls ``max_polls`` times ``poll_interval`` s apart in this thread, then waits with
    ``poll_later`` (no thread held) and polls again.
    """
    ctx = current_stage()
    generation = ctx.saved("provider_id")
    if generation is None:
        generation = ctx.checkpoint("provider_id", _create_generation(request.get("prompt", "a test")))
        ctx.checkpoint("created_by_attempt", ctx.attempt)
    with _client() as client:
        for _ in range(int(request.get("max_polls", 100))):
            response = client.get(f"{CREATE_PATH}/{generation}")
            response.raise_for_status()
            body = response.json()
            if body["state"] == "completed":
                return {"provider_id": generation, "video": body["assets"]["video"],
                        "created_by_attempt": ctx.saved("created_by_attempt"), "finished_by_attempt": ctx.attempt}
            if body["state"] == "failed":
                raise PermanentError(f"the provider failed: {body['failure_reason']}", code="provider_failed")
            ctx.progress(0.5, "Waiting for the provider")
            time.sleep(float(request.get("poll_interval", 0.2)))
    ctx.poll_later(float(request.get("poll_later", 1.0)))
    raise AssertionError("poll_later returns by raising")


# --- pipelines ------------------------------------------------------------------------------------------

rel_chain = Pipeline("rel_chain", [stage(rel_begin, name="begin"), stage(rel_hold, name="hold"),
                                   stage(rel_end, name="end")],
                     description="Three stages; the middle one works a while, blocks on a gate or fails.")
rel_fanout = Pipeline("rel_fanout", [stage(rel_split, name="split"),
                                     fan_out(rel_item, name="items", concurrency=2, on_failure="fail"),
                                     stage(rel_end, name="end")],
                      description="A capped fan-out whose failed item fails the job.")
rel_fanout_tolerant = Pipeline("rel_fanout_tolerant", [stage(rel_split, name="split"),
                                                       fan_out(rel_item, name="items", concurrency=2,
                                                               on_failure="tolerate"),
                                                       stage(rel_end, name="end")],
                               description="A capped fan-out that tolerates failed items.")
rel_provider = Pipeline("rel_provider", [stage(rel_render, name="render"), stage(rel_end, name="end")],
                        description="A paid create-then-poll provider call, then a last stage.")


# --- deliveries the engine refused ----------------------------------------------------------------------


class SkippedStageMessages(Middleware):
    """Records each stage message the engine's middleware skipped (stale, duplicated or canceled)."""

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        if message.options.get(RUN_OPTION) is not None:
            record("skipped", job=message.options.get(JOB_OPTION), run=message.options[RUN_OPTION],
                   token=message.options.get(TOKEN_OPTION), redis_id=message.options.get("redis_message_id"))
            logger.info("Skipped stage message %s of run %s", message.message_id, message.options[RUN_OPTION])




# --- the writer held back -------------------------------------------------------------------------------

#: A file path: while that file exists, this process's end writer holds every batch before writing it,
#: so a test can act (kill the worker, restart the database) while ends wait, already acknowledged.
WRITER_GATE_ENV = "CONVEYOR_TEST_WRITER_GATE"


def _hold_the_writer() -> None:
    from pipelines.engine import pgstore

    gate = os.environ.get(WRITER_GATE_ENV)
    if not gate or getattr(pgstore.apply_ends, "held", False):
        return
    write = pgstore.apply_ends

    def held(plans: list[dict[str, Any]]) -> Any:
        record("writer_waits", runs=[plan["run"] for plan in plans])
        while Path(gate).exists():
            time.sleep(0.05)
        return write(plans)

    held.held = True  # type: ignore[attr-defined]
    pgstore.apply_ends = held


def configure_broker(broker: dramatiq.Broker) -> None:
    """Called by the composition root (``pipelines.worker.setup``) for a ``CONVEYOR_PIPELINES`` module."""
    if not any(isinstance(m, SkippedStageMessages) for m in broker.middleware):
        broker.add_middleware(SkippedStageMessages())
    _hold_the_writer()
