"""The engine against bare Dramatiq on the same Redis, same worker settings, same run.

Measures, with one in-process worker of 8 threads on each side:
1. throughput of a 4-stage no-op pipeline (engine: Redis + PostgreSQL job store), submitted while the
   worker runs in the same process, and the worker's own rate draining pipelines submitted before it starts;
2. a 100-item fan-out joined before a last stage;
3. hand-off latency between stages that do real work (20 ms each), p50 and p99;
4. submit -> first stage start on an idle worker, p50 and p99.
Fixed sizes, bounded time; prints the ratios last. Needs Redis and PostgreSQL on 127.0.0.1.

    .venv/bin/python bench/engine.py
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import fresh_postgres, p50, percentile  # noqa: E402

REDIS_URL = os.environ.get("CONVEYOR_BENCH_REDIS_URL", "redis://127.0.0.1:6379/10")
CHAINS = 300  #: pipelines per throughput run
FANOUT_ITEMS = 100
FANOUTS = 3
LATENCY_SAMPLES = 30
WORK_SECONDS = 0.02  #: s each stage "works" in the latency runs
THREADS = 8
TIME_BOUND = 240.0  #: s for the whole benchmark


def main() -> None:
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    with fresh_postgres() as database_url:
        os.environ.update({"CONVEYOR_BROKER": "redis", "REDIS_URL": REDIS_URL, "DATABASE_URL": database_url,
                           "CONVEYOR_PROGRESS_INTERVAL": "0.5"})
        run(database_url)


def run(database_url: str) -> None:
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker

    import pipelines  # noqa: F401 - the engine's broker, middleware and pipelines
    from actors.context import current_stage
    from actors.stage import stage_actor
    from pipelines.db import dispose_all
    from pipelines.definition import Pipeline, fan_out, stage
    from pipelines.hooks import on_job_finished
    from pipelines.jobs import get_job, start_job
    from pipelines.schema import upgrade

    upgrade()

    marks: dict[tuple[str, int], float] = {}
    done_events: dict[str, threading.Event] = {}

    # --- bare Dramatiq: its own broker (defaults), namespace and actors on the same Redis -----------------
    bare = RedisBroker(url=REDIS_URL, namespace="bare")

    def bare_stage(run_id: str, index: int, work: float, last: bool) -> None:
        marks[(run_id, index)] = time.monotonic()
        if work:
            time.sleep(work)
        if last:
            done_events[run_id].set()

    bare_actor = dramatiq.actor(bare_stage, broker=bare, actor_name="bare_stage", max_retries=0)
    bare_counter = {"n": 0}
    bare_lock = threading.Lock()

    def bare_item(run_id: str, total: int) -> None:
        with bare_lock:
            bare_counter["n"] += 1
            finished = bare_counter["n"] == total
        if finished:  # the last item joins into one more stage, like the engine's fan-in
            bare_actor.send(run_id, 99, 0.0, True)

    bare_item_actor = dramatiq.actor(bare_item, broker=bare, actor_name="bare_item", max_retries=0)

    def bare_chain(run_id: str, work: float) -> None:
        done_events[run_id] = threading.Event()
        dramatiq.pipeline([bare_actor.message_with_options(args=(run_id, i, work, i == 3), pipe_ignore=True)
                           for i in range(4)], broker=bare).run()

    # --- the engine: stage actors and pipelines declared the usual way -----------------------------------
    @stage_actor(actor_name="bench_stage", retries=0)
    def bench_stage(value: dict) -> dict:
        ctx = current_stage()
        marks[(ctx.job_id, int(ctx.stage[-1]))] = time.monotonic()
        if value.get("work"):
            time.sleep(value["work"])
        return value

    chain = Pipeline("bench_chain", [stage(bench_stage, name=f"stage{i}") for i in range(4)])

    @stage_actor(actor_name="bench_items", retries=0)
    def bench_items(value: dict) -> list[int]:
        return list(range(value["items"]))

    @stage_actor(actor_name="bench_noop", retries=0)
    def bench_noop(value):
        return value

    fanout = Pipeline("bench_fanout", [stage(bench_items, name="split"),
                                       fan_out(bench_noop, name="items", concurrency=0),
                                       stage(bench_noop, name="join")])

    engine_worker = dramatiq.Worker(dramatiq.get_broker(), worker_threads=THREADS)
    bare_worker = dramatiq.Worker(bare, worker_threads=THREADS)
    finished: set[str] = set()
    finished_changed = threading.Condition()

    @on_job_finished
    def _record_finish(session, job, outbox) -> None:  # in-process, as cheap as the bare side's Event
        with finished_changed:
            finished.add(job.id)
            finished_changed.notify_all()

    def wait_engine(job_ids: list[str]) -> None:
        with finished_changed:
            if not finished_changed.wait_for(lambda: finished.issuperset(job_ids), TIME_BOUND):
                raise SystemExit("benchmark exceeded its time bound")

    results: dict[str, float] = {}
    # 0. worker-side rate: the pipelines are submitted first, then a worker drains them
    ids = [f"d{i}" for i in range(CHAINS)]
    for run_id in ids:
        bare_chain(run_id, 0.0)
    bare_worker.start()
    t0 = time.monotonic()
    for run_id in ids:
        done_events[run_id].wait(TIME_BOUND)
    results["bare_drain_per_s"] = CHAINS / (time.monotonic() - t0)
    # 1. four-stage throughput, submitting while the worker runs (one process does both)
    t0 = time.monotonic()
    ids = [f"b{i}" for i in range(CHAINS)]
    for run_id in ids:
        bare_chain(run_id, 0.0)
    for run_id in ids:
        done_events[run_id].wait(TIME_BOUND)
    results["bare_chain_per_s"] = CHAINS / (time.monotonic() - t0)
    # 2. fan-out of 100 and a join
    t0 = time.monotonic()
    for n in range(FANOUTS):
        run_id = f"bf{n}"
        done_events[run_id] = threading.Event()
        bare_counter["n"] = 0
        for _ in range(FANOUT_ITEMS):
            bare_item_actor.send(run_id, FANOUT_ITEMS)
        done_events[run_id].wait(TIME_BOUND)
    results["bare_fanout_s"] = (time.monotonic() - t0) / FANOUTS
    # 3 + 4. latency with real work, idle worker between samples
    bare_handoffs, bare_first = [], []
    for n in range(LATENCY_SAMPLES):
        run_id = f"bl{n}"
        time.sleep(0.3)
        submitted = time.monotonic()
        bare_chain(run_id, WORK_SECONDS)
        done_events[run_id].wait(30)
        bare_first.append(marks[(run_id, 0)] - submitted)
        bare_handoffs += [marks[(run_id, i + 1)] - marks[(run_id, i)] - WORK_SECONDS for i in range(3)]
    bare_worker.stop()

    jobs = [start_job(pipeline=chain.name, input={"work": 0})["id"] for _ in range(CHAINS)]
    engine_worker.start()
    t0 = time.monotonic()
    wait_engine(jobs)
    results["engine_drain_per_s"] = CHAINS / (time.monotonic() - t0)
    t0 = time.monotonic()
    jobs = [start_job(pipeline=chain.name, input={"work": 0})["id"] for _ in range(CHAINS)]
    wait_engine(jobs)
    results["engine_chain_per_s"] = CHAINS / (time.monotonic() - t0)
    t0 = time.monotonic()
    for _ in range(FANOUTS):
        wait_engine([start_job(pipeline=fanout.name, input={"items": FANOUT_ITEMS})["id"]])
    results["engine_fanout_s"] = (time.monotonic() - t0) / FANOUTS
    engine_handoffs, engine_first = [], []
    for _ in range(LATENCY_SAMPLES):
        time.sleep(0.3)
        submitted = time.monotonic()
        job_id = start_job(pipeline=chain.name, input={"work": WORK_SECONDS})["id"]
        wait_engine([job_id])
        engine_first.append(marks[(job_id, 0)] - submitted)
        engine_handoffs += [marks[(job_id, i + 1)] - marks[(job_id, i)] - WORK_SECONDS for i in range(3)]
    time.sleep(0.5)  # the last job's commit follows its finish hook
    engine_worker.stop()
    failed = [j for j in finished if get_job(j)["status"] != "completed"]
    assert not failed, f"{len(failed)} engine jobs did not complete"
    dispose_all()

    ms = 1000.0
    print(f"4-stage no-op pipelines, {CHAINS} each, 1 process x {THREADS} threads:")
    print(f"  bare Dramatiq  {results['bare_chain_per_s']:8.1f} pipelines/s")
    print(f"  engine         {results['engine_chain_per_s']:8.1f} pipelines/s  (Redis + PostgreSQL job store)")
    print("the same, submitted first and then drained by the worker (the worker's own rate):")
    print(f"  bare Dramatiq  {results['bare_drain_per_s']:8.1f} pipelines/s")
    print(f"  engine         {results['engine_drain_per_s']:8.1f} pipelines/s")
    print(f"fan-out of {FANOUT_ITEMS} no-op items joined into one stage, mean of {FANOUTS}:")
    print(f"  bare Dramatiq  {results['bare_fanout_s'] * ms:8.1f} ms")
    print(f"  engine         {results['engine_fanout_s'] * ms:8.1f} ms")
    print(f"hand-off between stages doing {WORK_SECONDS * ms:.0f} ms of work ({3 * LATENCY_SAMPLES} hand-offs):")
    print(f"  bare Dramatiq  p50 {p50(bare_handoffs) * ms:7.1f} ms  p99 {percentile(bare_handoffs, 99) * ms:7.1f} ms")
    print(f"  engine         p50 {p50(engine_handoffs) * ms:7.1f} ms  p99 "
          f"{percentile(engine_handoffs, 99) * ms:7.1f} ms")
    print(f"submit -> first stage start on an idle worker ({LATENCY_SAMPLES} jobs):")
    print(f"  bare Dramatiq  p50 {p50(bare_first) * ms:7.1f} ms  p99 {percentile(bare_first, 99) * ms:7.1f} ms")
    print(f"  engine         p50 {p50(engine_first) * ms:7.1f} ms  p99 {percentile(engine_first, 99) * ms:7.1f} ms")
    print(f"added hand-off per stage: p50 {(p50(engine_handoffs) - p50(bare_handoffs)) * ms:+.1f} ms")
    print(f"ratio engine/bare pipeline throughput: {results['engine_chain_per_s'] / results['bare_chain_per_s']:.2f}")
    print(f"ratio engine/bare worker drain rate: {results['engine_drain_per_s'] / results['bare_drain_per_s']:.2f}")
    print(f"ratio engine/bare fan-out throughput: {results['bare_fanout_s'] / results['engine_fanout_s']:.2f}")


if __name__ == "__main__":
    main()
