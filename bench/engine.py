"""The engine against bare Dramatiq and Celery: same Redis, same machine, interleaved rounds.

Each round starts the worker processes of one side at a time (1 process, then 2 processes, each of
8 threads), lets them warm up, and measures:
1. a 4-stage no-op chain: 300 chains submitted while the workers are frozen (SIGSTOP), then drained
   (the workers' own rate), and 300 more submitted while they run (the submit path counts too), for
   bare Dramatiq, the engine with its PostgreSQL job store, and Celery with a Redis result backend;
2. a 100-item fan-out joined into one stage, 3 in a row (bare Dramatiq and the engine);
and the CPU the worker processes, PostgreSQL and Redis spent on them. After the rounds, with one
process of each: the hand-off between stages that work 20 ms, and submit -> first stage on an idle
worker. Prints medians with their range over the rounds; the ratios come last. Bounded in time;
loopback only. Needs Redis and PostgreSQL on 127.0.0.1.

    .venv/bin/python bench/engine.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.common import fresh_postgres, p50, percentile  # noqa: E402

REDIS_URL = os.environ.get("CONVEYOR_BENCH_REDIS_URL", "redis://127.0.0.1:6379/10")
CHAINS = 300  #: pipelines per throughput run
FANOUT_ITEMS = 100
FANOUTS = 3
LATENCY_SAMPLES = 30
WORK_SECONDS = 0.02  #: s each stage "works" in the latency runs
THREADS = 8
RUN_BOUND = 120.0  #: s any one measurement may take
VENV_BIN = Path(sys.executable).parent


def cpu_seconds(names: tuple[str, ...] = (), pids: set[int] | None = None) -> float:
    """CPU (user + system) of the processes with one of ``names`` as command, or of ``pids``."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        if (pids is not None and int(entry.name) in pids) or (names and comm in names):
            fields = stat[stat.rindex(")") + 2:].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


class Workers:
    """Worker processes of one side, started for one measurement and stopped after it."""

    def __init__(self, command: list[str], env: dict[str, str], processes: int) -> None:
        self.procs = [subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.PIPE if os.environ.get("BENCH_QUIET") else None,
                                       start_new_session=True)
                      for _ in range(processes)]

    def pids(self) -> set[int]:
        found = {p.pid for p in self.procs}
        for entry in Path("/proc").iterdir():  # dramatiq's worker processes are children of its main one
            if entry.name.isdigit():
                try:
                    ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                if ppid in found:
                    found.add(int(entry.name))
        return found

    def pause(self) -> None:
        """Freeze every worker process (SIGSTOP): work submitted now waits, as if sent before they started."""
        for p in self.procs:
            os.killpg(p.pid, signal.SIGSTOP)

    def resume(self) -> None:
        for p in self.procs:
            os.killpg(p.pid, signal.SIGCONT)

    def stop(self) -> None:
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def wait_until(check: Callable[[], bool], what: str, bound: float = RUN_BOUND, pause: float = 0.005) -> None:
    deadline = time.monotonic() + bound
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"benchmark exceeded its time bound waiting for {what}")
        time.sleep(pause)


class Bench:
    def __init__(self, database_url: str) -> None:
        import psycopg
        import redis

        self.redis = redis.Redis.from_url(REDIS_URL)
        self.database_url = database_url
        self.db = psycopg.connect(database_url, autocommit=True)
        self.var = tempfile.mkdtemp(prefix="conveyor-bench-")
        self.env = {**os.environ, "CONVEYOR_BROKER": "redis", "REDIS_URL": REDIS_URL, "DATABASE_URL": database_url,
                    "CONVEYOR_BENCH_REDIS_URL": REDIS_URL, "CONVEYOR_PROGRESS_INTERVAL": "0.5",
                    "CONVEYOR_VAR_DIR": self.var, "CONVEYOR_PIPELINES": "bench.engine_pipelines",
                    "PYTHONPATH": str(ROOT)}
        os.environ.update({k: self.env[k] for k in ("CONVEYOR_BROKER", "REDIS_URL", "DATABASE_URL",
                                                    "CONVEYOR_VAR_DIR", "CONVEYOR_PIPELINES")})

    # --- the three sides ------------------------------------------------------------------------------
    @contextmanager
    def workers(self, side: str, processes: int) -> Iterator[Workers]:
        if side == "celery":
            command = [str(VENV_BIN / "celery"), "-A", "bench.celery_tasks", "worker", "-P", "threads", "-c",
                       str(THREADS), "-Q", "bench_celery", "--without-heartbeat", "--without-mingle",
                       "--without-gossip", "-l", "WARNING", "-n", f"bench{uuid.uuid4().hex[:6]}@%h"]
        else:
            module = "bench.bare_actors" if side == "bare" else "pipelines.worker:setup"
            command = [str(VENV_BIN / "dramatiq"), module, "--processes", "1", "--threads", str(THREADS)]
        workers = Workers(command, self.env, processes)
        try:
            self.warm_up(side)
            yield workers
        finally:
            workers.stop()

    def warm_up(self, side: str) -> None:
        self.chains(side, 10)  # every worker process up and connected

    def chains(self, side: str, count: int, work: float = 0.0) -> float:
        """Run ``count`` 4-stage chains at once; seconds from the first submit to the last finish."""
        t0 = time.monotonic()
        self.wait_chains(side, self.submit_chains(side, count, work))
        return time.monotonic() - t0

    def submit_chains(self, side: str, count: int, work: float = 0.0) -> list[Any]:
        if side == "bare":
            from bench import bare_actors

            self.redis.set("bench:done", 0)
            for _ in range(count):
                bare_actors.send_chain(uuid.uuid4().hex, work)
            return [None] * count
        if side == "engine":
            return self.start_jobs("bench_chain", [{"work": work}] * count)
        from bench import celery_tasks

        return [celery_tasks.send_chain({"work": work}) for _ in range(count)]

    def wait_chains(self, side: str, handles: list[Any]) -> None:
        if side == "bare":
            wait_until(lambda: int(self.redis.get("bench:done") or 0) >= len(handles), "bare chains")
        elif side == "engine":
            self.wait_jobs(handles)
        else:
            for result in handles:
                result.get(timeout=RUN_BOUND)

    def fanouts(self, side: str) -> float:
        """Mean seconds of one fan-out of FANOUT_ITEMS no-op items joined into one stage."""
        t0 = time.monotonic()
        for _ in range(FANOUTS):
            if side == "bare":
                from bench import bare_actors

                self.redis.set("bench:done", 0)
                bare_actors.send_fanout(uuid.uuid4().hex, FANOUT_ITEMS)
                wait_until(lambda: int(self.redis.get("bench:done") or 0) >= 1, "bare fan-out")
            else:
                self.wait_jobs(self.start_jobs("bench_fanout", [{"items": FANOUT_ITEMS}]))
        return (time.monotonic() - t0) / FANOUTS

    def start_jobs(self, pipeline: str, inputs: list[dict]) -> list[str]:
        from pipelines.services.jobs import start_job

        return [start_job(pipeline=pipeline, input=value)["id"] for value in inputs]

    def wait_jobs(self, ids: list[str]) -> None:
        def done() -> bool:
            row = self.db.execute("SELECT count(*), count(*) FILTER (WHERE status = 'completed') FROM jobs "
                                  "WHERE id = ANY(%s) AND status IN ('completed', 'failed', 'canceled')",
                                  (ids,)).fetchone()
            assert row is not None
            if row[0] != row[1]:
                errors = self.db.execute("SELECT DISTINCT error::text FROM jobs WHERE id = ANY(%s) "
                                         "AND status <> 'completed'", (ids,)).fetchall()
                raise SystemExit(f"{row[0] - row[1]} engine jobs did not complete: {errors}")
            return row[0] == len(ids)

        wait_until(done, "engine jobs", pause=0.01)

    # --- latency ------------------------------------------------------------------------------------
    def latencies(self, side: str) -> tuple[list[float], list[float]]:
        """Hand-offs between stages that work WORK_SECONDS, and submit -> first stage start (s)."""
        handoffs, firsts = [], []
        for _ in range(LATENCY_SAMPLES):
            time.sleep(0.3)  # the worker idles: it waits on its broker
            self.redis.delete("bench:marks")
            submitted = time.time()
            self.chains(side, 1, WORK_SECONDS)
            marks = sorted(float(line.split()[2]) for line in self.redis.lrange("bench:marks", 0, -1))
            firsts.append(marks[0] - submitted)
            handoffs += [b - a - WORK_SECONDS for a, b in zip(marks, marks[1:], strict=False)]
        return handoffs, firsts


def measure_round(bench: Bench, processes: int, results: dict[str, list[float]]) -> None:
    key = f"p{processes}"
    measured: dict[str, dict[str, float]] = {}
    for side in ("bare", "engine", "celery"):
        if side == "celery":
            # What an earlier Celery run left (reserved, unacknowledged) would come back mid-run.
            bench.redis.delete("bench_celery", "unacked", "unacked_index", "unacked_mutex")
        try:
            measured[side] = measure_side(bench, side, processes)
        except Exception as error:  # a Celery chain that never finished: say so, leave this round of it out
            if side != "celery":
                raise
            print(f"celery, {processes} process(es): {type(error).__name__}: {error}; round left out", flush=True)
            results.setdefault(f"{key} celery failures", []).append(1.0)
    for side, values in measured.items():
        for name, value in values.items():
            results.setdefault(f"{key} {side} {name}", []).append(value)
    bare, engine = measured["bare"], measured["engine"]
    results.setdefault(f"{key} ratio chain", []).append(engine["chains/s"] / bare["chains/s"])
    results.setdefault(f"{key} ratio live", []).append(engine["live chains/s"] / bare["live chains/s"])
    results.setdefault(f"{key} ratio fan-out", []).append(bare["fan-out s"] / engine["fan-out s"])
    if "celery" in measured:
        results.setdefault(f"{key} ratio celery", []).append(engine["chains/s"] / measured["celery"]["chains/s"])


def measure_side(bench: Bench, side: str, processes: int) -> dict[str, float]:
    values: dict[str, float] = {}
    with bench.workers(side, processes) as workers:
        # The workers' own rate: the chains are submitted while they are frozen, then drained.
        workers.pause()
        handles = bench.submit_chains(side, CHAINS)
        pids = workers.pids()
        cpu0 = (cpu_seconds(pids=pids), cpu_seconds(("postgres",)), cpu_seconds(("redis-server",)))
        t0 = time.monotonic()
        workers.resume()
        bench.wait_chains(side, handles)
        seconds = time.monotonic() - t0
        cpu1 = (cpu_seconds(pids=pids), cpu_seconds(("postgres",)), cpu_seconds(("redis-server",)))
        values["chains/s"] = CHAINS / seconds
        for name, before, after in zip(("worker", "postgres", "redis"), cpu0, cpu1, strict=True):
            values[f"{name} ms/hand-off"] = 1000.0 * (after - before) / (CHAINS * 4)
        # Submitted while they run, by this one process: the submit path counts too.
        values["live chains/s"] = CHAINS / bench.chains(side, CHAINS)
        if side != "celery":
            values["fan-out s"] = bench.fanouts(side)
    return values


def describe(values: list[float], digits: int = 2) -> str:
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--processes", default="1,2", help="worker process counts to measure, e.g. 1,2")
    args = parser.parse_args()
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    with fresh_postgres() as database_url:
        os.environ.update({"DATABASE_URL": database_url, "CONVEYOR_BROKER": "redis", "REDIS_URL": REDIS_URL})
        run(database_url, args.rounds, [int(p) for p in args.processes.split(",")])


def run(database_url: str, rounds: int, process_counts: list[int]) -> None:
    from pipelines.store.db import dispose_all
    from pipelines.store.migrate import analyze, upgrade

    upgrade(database_url)
    bench = Bench(database_url)
    from bench import bare_actors  # noqa: F401 - declares its actors on a broker of its own
    from pipelines.worker import setup

    setup()  # the driver starts jobs through the engine's own API (CONVEYOR_PIPELINES names the bench's)

    with bench.workers("engine", 1):  # fill the tables a little, then give the planner statistics
        bench.chains("engine", 200)
    analyze(database_url)

    results: dict[str, list[float]] = {}
    for n in range(rounds):
        for processes in process_counts:
            measure_round(bench, processes, results)
        print(f"round {n + 1}/{rounds} done", flush=True)

    latency = {}
    for side in ("bare", "engine"):
        with bench.workers(side, 1):
            latency[side] = bench.latencies(side)
    dispose_all()

    ms = 1000.0
    print(f"\nMedian (min–max) of {rounds} interleaved rounds; each worker process has {THREADS} threads.")
    for processes in process_counts:
        key = f"p{processes}"
        print(f"\n{processes} worker process(es): {CHAINS} 4-stage no-op chains, submitted first, then drained")
        for side in ("bare", "engine", "celery"):
            print(f"  {side:7s} {describe(results[f'{key} {side} chains/s'], 1):>24s} chains/s   CPU per hand-off: "
                  f"worker {describe(results[f'{key} {side} worker ms/hand-off'])} ms, "
                  f"PostgreSQL {describe(results[f'{key} {side} postgres ms/hand-off'])} ms, "
                  f"Redis {describe(results[f'{key} {side} redis ms/hand-off'])} ms")
        print("  the same, submitted by this one process while the workers run (the submit path counts too):")
        for side in ("bare", "engine", "celery"):
            print(f"  {side:7s} {describe(results[f'{key} {side} live chains/s'], 1):>24s} chains/s")
        print(f"  fan-out of {FANOUT_ITEMS} items joined into one stage, mean of {FANOUTS}:")
        for side in ("bare", "engine"):
            print(f"  {side:7s} {describe([s * ms for s in results[f'{key} {side} fan-out s']], 1):>24s} ms")
        print(f"  engine/bare chains {describe(results[f'{key} ratio chain'])} "
              f"(submitted while running {describe(results[f'{key} ratio live'])}), "
              f"fan-out {describe(results[f'{key} ratio fan-out'])}; "
              f"engine/Celery chains {describe(results[f'{key} ratio celery'])}"
              + (f" ({len(results[f'{key} celery failures'])} Celery round(s) left out: a chain never finished)"
                 if f"{key} celery failures" in results else ""))
    print(f"\nhand-off between stages doing {WORK_SECONDS * ms:.0f} ms of work ({3 * LATENCY_SAMPLES} hand-offs), "
          "and submit -> first stage start on an idle worker:")
    for side in ("bare", "engine"):
        handoffs, firsts = latency[side]
        print(f"  {side:7s} hand-off p50 {p50(handoffs) * ms:6.1f} ms  p99 {percentile(handoffs, 99) * ms:6.1f} ms   "
              f"first stage p50 {p50(firsts) * ms:6.1f} ms  p99 {percentile(firsts, 99) * ms:6.1f} ms")
    key = f"p{process_counts[0]}"
    print(f"ratio engine/celery pipeline throughput: {statistics.median(results[f'{key} ratio celery']):.2f}")
    print(f"ratio engine/bare pipeline throughput: {statistics.median(results[f'{key} ratio chain']):.2f}")
    print(f"ratio engine/bare fan-out throughput: {statistics.median(results[f'{key} ratio fan-out']):.2f}")


if __name__ == "__main__":
    main()
