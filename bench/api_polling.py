"""Benchmark: job polling and event streams of the web app under gunicorn, as configured for production.

1. ``GET /api/jobs/{id}`` (bearer auth, ETag, Retry-After) under 50 concurrent keep-alive pollers, against a
   bare Flask + SQLAlchemy endpoint reading the same row by primary key, both under gunicorn with gevent
   workers (``WEB_CONCURRENCY`` processes, default 2), in the same run. Prints requests/s, p50 and p99,
   and the ratio (Conveyor / bare) last.
2. How many open event streams one web process holds while job polling keeps its p99 under 50 ms: streams
   are opened in steps (bounded), a notice is published to every stream's job each second, and 50 pollers
   measure latency meanwhile.

Everything runs on 127.0.0.1: PostgreSQL on 127.0.0.1:5432 when reachable (a
fresh database is created and dropped, see ``bench/common.py``), else SQLite; Redis at 127.0.0.1:6379 when reachable, else the
embedded one. Bounded: each measurement lasts ``--seconds`` (default 5) after a 1 s warm-up; ``--rounds`` alternating
runs of each endpoint (default 3); stream steps up to ``--max-streams`` and at most 8 minutes.

    .venv/bin/python bench/api_polling.py [--seconds 5] [--max-streams 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.common import fresh_postgres  # noqa: E402

REDIS_URL = os.environ.get("CONVEYOR_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
POLLERS = 50
P99_TARGET_MS = 50.0
STREAM_STEPS = (0, 100, 250, 500, 750, 1000, 2000)
#: The polling load measured beside open streams: clients, and s between one client's polls (~100 req/s).
PACED_POLLERS = 10
PACED_INTERVAL = 0.1


# --- the bare baseline app (imported by gunicorn in its own process) -------------------------------------

def bare_app():
    """Flask + SQLAlchemy: one row of ``jobs`` by primary key, as JSON; nothing else."""
    from flask import Flask, abort, jsonify
    from sqlalchemy import MetaData, Table, create_engine, select

    from conveyor.config import normalize_database_url

    engine = create_engine(normalize_database_url(os.environ["DATABASE_URL"]))
    jobs = Table("jobs", MetaData(), autoload_with=engine)
    app = Flask("bare")

    @app.get("/bare/<job_id>")
    def read(job_id: str):
        with engine.connect() as connection:
            row = connection.execute(select(jobs).where(jobs.c.id == job_id)).mappings().one_or_none()
        if row is None:
            abort(404)
        return jsonify({k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()})

    return app


# --- set-up ----------------------------------------------------------------------------------------------

def _reachable(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def database(var: Path) -> Iterator[str]:
    """A fresh PostgreSQL database when the server is reachable, else SQLite under ``var``."""
    if not _reachable("127.0.0.1", 5432):
        yield f"sqlite:///{var / 'bench.db'}"
        return
    with fresh_postgres("conveyor_bench_api") as url:
        yield url


def prepare(env: dict[str, str], jobs: int) -> tuple[str, list[str]]:
    """Migrate, create a user and ``jobs`` processing jobs (rows only: no worker runs here)."""
    code = f"""
import json
from pipelines.store.migrate import upgrade
upgrade()
from pipelines.store.db import transaction
from pipelines.store.models import Job
from pipelines.services.users import create_user
from pipelines.definition import get_pipeline
from pipelines.engine.machine import initial_summary
from pipelines.worker import setup
setup()
user = create_user("bench")
ids = []
with transaction() as session:
    for i in range({jobs}):
        job = Job(pipeline="demo", user_id=user.id, status="processing", input={{"items": 3}}, errors=[],
                  stages=initial_summary(get_pipeline("demo")), step="Working on item 1 of 3", progress=12.5)
        session.add(job)
        session.flush()
        ids.append(job.id)
print(json.dumps({{"token": user.token, "ids": ids}}))
"""
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, check=True, capture_output=True, text=True)
    data = json.loads(out.stdout.strip().splitlines()[-1])
    return data["token"], data["ids"]


@contextmanager
def gunicorn(env: dict[str, str], app: str, *, workers: int, conveyor: bool, ready_path: str) -> Iterator[int]:
    port = _free_port()
    args = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--no-control-socket",
            "--workers", str(workers), "--log-level", "warning"]
    if conveyor:
        args[3:3] = ["--config", str(ROOT / "web" / "gunicorn.conf.py")]
    else:
        args += ["--worker-class", "gevent", "--worker-connections", "2000"]
    process = subprocess.Popen([*args, app], env=env, cwd=ROOT)
    try:
        _wait_ready(process, port, ready_path, workers)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


def _wait_ready(process: subprocess.Popen, port: int, path: str, workers: int) -> None:
    """Wait until every worker has loaded the app: a burst of requests all answer 200 quickly."""
    import httpx

    deadline = time.monotonic() + 120
    while True:
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("gunicorn did not become ready")
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
                started = time.monotonic()
                if all(client.get(path).status_code == 200 for _ in range(20 * workers)) \
                        and time.monotonic() - started < 2:
                    return
        except httpx.TransportError:
            time.sleep(0.2)


# --- load ------------------------------------------------------------------------------------------------

async def _read_response(reader: asyncio.StreamReader) -> int:
    status = int((await reader.readline()).split()[1])
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.decode().partition(":")
        if name.lower() == "content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return status


async def _poller(port: int, request: bytes, start: float, stop: float, latencies: list[float],
                  errors: list[int], interval: float = 0.0) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while (now := time.perf_counter()) < stop:
            if interval:
                await asyncio.sleep(interval)
                now = time.perf_counter()
            writer.write(request)
            try:
                status = await _read_response(reader)
            except (asyncio.IncompleteReadError, ConnectionError, IndexError):
                errors.append(0)
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                continue
            if status != 200:
                errors.append(status)
            if now >= start:
                latencies.append(time.perf_counter() - now)
    finally:
        writer.close()


async def poll(port: int, path: str, headers: dict[str, str], seconds: float, *, pollers: int = POLLERS,
               interval: float = 0.0) -> dict[str, float]:
    """``pollers`` keep-alive connections asking ``path`` (as fast as answered, or every ``interval`` s)
    for 1 + ``seconds`` s."""
    lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{lines}\r\n".encode()
    latencies: list[float] = []
    errors: list[int] = []
    start = time.perf_counter() + 1.0
    stop = start + seconds
    await asyncio.gather(*(_poller(port, request, start, stop, latencies, errors, interval)
                           for _ in range(pollers)))
    latencies.sort()
    pick = lambda p: latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1000  # noqa: E731
    return {"rps": len(latencies) / seconds, "p50_ms": pick(50), "p99_ms": pick(99), "errors": len(errors)}


async def _stream(port: int, path: str, token: str, opened: list[int]) -> None:
    """One event stream, read until the server ends it or the task is canceled.

    A plain read per arriving chunk and no timers: with a thousand streams, a timeout per read
    would keep this client's event loop (which also times the pollers) busier than the server.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
                 "Accept: text/event-stream\r\n\r\n".encode())
    try:
        first = await asyncio.wait_for(reader.readline(), 30)
        if b" 200 " in first:
            opened.append(1)
        while await reader.read(65536):
            pass
    finally:
        writer.close()


def hold_streams(port: int, token: str, ids: list[str], count: int, opened, stop) -> None:
    """In a process of its own: open ``count`` streams, count the opened ones in ``opened``, read them until
    ``stop`` is set. Apart from the pollers, so reading the streams never delays the timing of a poll."""

    async def run() -> None:
        counted: list[int] = []
        tasks = [asyncio.create_task(_stream(port, f"/api/jobs/{ids[i % len(ids)]}/events", token, counted))
                 for i in range(count)]
        while not stop.is_set():
            opened.value = len(counted)
            await asyncio.sleep(0.1)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(run())


def server_connections(port: int) -> int:
    """Connections the server on ``port`` still holds: accepted sockets, open or closed by the peer only."""
    held = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            next(lines)  # the header
            for line in lines:
                fields = line.split()
                local, state = fields[1], fields[3]
                if int(local.rsplit(":", 1)[1], 16) == port and state in ("01", "08"):  # ESTABLISHED, CLOSE_WAIT
                    held += 1
    return held


async def streams_step(port: int, token: str, ids: list[str], count: int, seconds: float,
                       redis_client) -> dict[str, float]:
    """Open ``count`` streams, publish a notice per stream job each second, measure polling meanwhile."""
    context = multiprocessing.get_context("spawn")
    opened, stop = context.Value("i", 0), context.Event()
    holder = context.Process(target=hold_streams, args=(port, token, ids, count, opened, stop), daemon=True)
    holder.start()
    deadline = time.monotonic() + 60
    while opened.value < count and time.monotonic() < deadline and holder.is_alive():
        await asyncio.sleep(0.1)

    publishing_done = asyncio.Event()

    async def publisher() -> None:
        while not publishing_done.is_set():
            pipe = redis_client.pipeline(transaction=False)
            for job_id in ids:
                pipe.publish(f"conveyor:job:{job_id}", json.dumps({"event": "progress", "job_id": job_id}))
            await asyncio.to_thread(pipe.execute)
            await asyncio.sleep(1.0)

    publishing = asyncio.create_task(publisher())
    result = await poll(port, f"/api/jobs/{ids[0]}", {"Authorization": f"Bearer {token}"}, seconds,
                        pollers=PACED_POLLERS, interval=PACED_INTERVAL)
    held = opened.value
    stop.set()
    await asyncio.to_thread(holder.join, 30)
    if holder.is_alive():
        holder.kill()
    # The server learns a stream was closed when it next writes to it (a keep-alive comment at the latest):
    # wait until it has let go of this step's connections, so the next step starts from a server holding none.
    released = time.monotonic() + 60
    while server_connections(port) > 0 and time.monotonic() < released:
        await asyncio.sleep(0.5)
    publishing_done.set()
    await publishing
    return {"streams": held, **result}


def _median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    return sorted(runs, key=lambda r: r["rps"])[len(runs) // 2]


# --- main ------------------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", "2")))
    parser.add_argument("--max-streams", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs of each endpoint")
    options = parser.parse_args()

    var = Path(tempfile.mkdtemp(prefix="conveyor-bench-api-"))
    redis_up = _reachable("127.0.0.1", 6379)
    with database(var) as url:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
        env.update(DATABASE_URL=url, CONVEYOR_VAR_DIR=str(var), SECRET_KEY="bench", PYTHONPATH=str(ROOT),
                   CONVEYOR_JOB_RATE_LIMIT="100000/minute")
        if redis_up:
            env["REDIS_URL"] = REDIS_URL
        token, ids = prepare(env, jobs=50)
        print(f"database {url.split('://')[0]}, broker {'redis' if redis_up else 'embedded redis'}, "
              f"{options.workers} gevent worker(s), {POLLERS} pollers, {options.seconds:.0f} s per run")

        auth = {"Authorization": f"Bearer {token}"}
        runs: dict[str, list[dict[str, float]]] = {"bare": [], "conveyor": []}
        with gunicorn(env, "web.app:create_app()", workers=options.workers, conveyor=True,
                      ready_path="/healthz") as conveyor_port, \
                gunicorn(env, "bench.api_polling:bare_app()", workers=options.workers, conveyor=False,
                         ready_path=f"/bare/{ids[0]}") as bare_port:
            # Alternate the two, so a neighbour's load on this shared machine hits both alike.
            for _ in range(options.rounds):
                runs["bare"].append(asyncio.run(poll(bare_port, f"/bare/{ids[0]}", {}, options.seconds)))
                runs["conveyor"].append(asyncio.run(poll(conveyor_port, f"/api/jobs/{ids[0]}", auth,
                                                         options.seconds)))
        for name, label in (("bare", "bare Flask+SQLAlchemy"), ("conveyor", "GET /api/jobs/{id}")):
            for r in runs[name]:
                print(f"{label:<24} {r['rps']:8.0f} req/s   p50 {r['p50_ms']:6.1f} ms   p99 {r['p99_ms']:6.1f} ms"
                      f"   errors {r['errors']:.0f}")
        bare = _median_run(runs["bare"])
        conveyor = _median_run(runs["conveyor"])

        print(f"\nevent streams on one web process (a notice per stream job each second) beside paced polling "
              f"({PACED_POLLERS} clients, one poll each per {PACED_INTERVAL:.1f} s; p99 target {P99_TARGET_MS:.0f} ms):")
        if redis_up:
            import redis

            client = redis.Redis.from_url(REDIS_URL)
        else:
            from actors.broker.build import embedded_redis_client

            client = embedded_redis_client(var)
        held, held_fast, fast_so_far = 0, 0, True
        # A stream its client closed keeps its connection slot until the server's next write to it (a notice,
        # or the keep-alive comment within 15 s), so a step may overlap the one before: room for both.
        env_one = {**env, "WEB_CONCURRENCY": "1", "WEB_WORKER_CONNECTIONS": str(max(2000, 2 * options.max_streams + 100))}
        stream_deadline = time.monotonic() + 480
        with gunicorn(env_one, "web.app:create_app()", workers=1, conveyor=True, ready_path="/healthz") as port:
            for count in [s for s in STREAM_STEPS if s <= options.max_streams]:
                step = asyncio.run(streams_step(port, token, ids, count, options.seconds, client))
                opened = step["streams"] == count and not step["errors"]
                fast = opened and step["p99_ms"] < P99_TARGET_MS
                print(f"  {step['streams']:5.0f} of {count} streams open: polling {step['rps']:6.0f} req/s, p50 "
                      f"{step['p50_ms']:5.1f} ms, p99 {step['p99_ms']:6.1f} ms{'' if fast else '  (over target)'}")
                if not opened:
                    break
                held = count
                fast_so_far = fast_so_far and fast
                if fast_so_far:
                    held_fast = count
                if time.monotonic() > stream_deadline:
                    print("  (time bound reached)")
                    break
        print(f"\nstreams held by one process: {held}; with polling p99 < {P99_TARGET_MS:.0f} ms at every step "
              f"up to it: {held_fast}")
        print(f"polling ratio (Conveyor / bare, median of {options.rounds} alternating runs): "
              f"{conveyor['rps'] / bare['rps']:.2f} of the requests/s, p99 {conveyor['p99_ms'] / bare['p99_ms']:.2f}x")


if __name__ == "__main__":
    main()
