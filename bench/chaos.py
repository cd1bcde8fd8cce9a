"""A chaos soak: thousands of fan-out jobs through two worker processes while faults keep coming.

A driver submits ``--jobs`` (default 2,000) ``demo`` jobs (a fan-out of 4 items, a parallel step)
at a steady rate to two ``dramatiq pipelines.worker:setup`` processes, and meanwhile:
- every 20 s SIGKILLs one worker process and starts a new one;
- restarts Redis once (a private ``redis-server``: every queued message is lost with it);
- restarts PostgreSQL once (the machine's cluster, through ``pg_ctlcluster``).
Then it waits for every job to end and prints jobs lost, stages completed twice, jobs stuck, and
how much delay the faults added (p99 of job durations against their median). Target: 0 / 0 / 0.

Loopback only; bounded (``--bound`` seconds, default 600). Run by ``make bench``, not by CI: it
restarts the machine's PostgreSQL.

    .venv/bin/python bench/chaos.py [--jobs 2000] [--rate 25]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.common import fresh_postgres, p50, percentile  # noqa: E402

KILL_EVERY = 20.0  #: s between SIGKILLs of a worker process
REDIS_RESTART_AT = 30.0  #: s after the first submission
POSTGRES_RESTART_AT = 55.0
STUCK_AFTER = 180.0  #: s after the last submission, a job not ended counts as stuck
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Redis:
    """A private redis-server on 127.0.0.1, restartable on the same port with nothing kept."""

    def __init__(self, directory: str) -> None:
        self.port, self.directory = free_port(), directory
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server") or "redis-server"
        self.process = subprocess.Popen([binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                         "--appendonly", "no", "--dir", self.directory],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis(port=self.port, socket_connect_timeout=0.5).ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise SystemExit("redis-server did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)


def restart_postgres() -> None:
    version = sorted(os.listdir("/etc/postgresql"))[0]
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"], check=True,
                   capture_output=True, timeout=60)


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([str(VENV_BIN / "dramatiq"), "pipelines.worker:setup", "--processes", "1", "--threads", "8"],
                                cwd=ROOT, env=env, stdout=out, stderr=out, start_new_session=True)


def kill(worker: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(worker.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    worker.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=25.0, help="jobs submitted per second")
    parser.add_argument("--bound", type=float, default=600.0, help="s the whole soak may take")
    args = parser.parse_args()
    if not Path("/etc/postgresql").is_dir() or shutil.which("pg_ctlcluster") is None:
        raise SystemExit("the soak restarts PostgreSQL through pg_ctlcluster, which this machine lacks")
    scratch = tempfile.mkdtemp(prefix="conveyor-chaos-")
    redis_server = Redis(scratch)
    redis_server.start()
    try:
        with fresh_postgres("conveyor_chaos") as database_url:
            soak(args, scratch, redis_server, database_url)
    finally:
        redis_server.stop()


def soak(args: argparse.Namespace, scratch: str, redis_server: Redis, database_url: str) -> None:
    env = {**os.environ, "CONVEYOR_BROKER": "redis", "REDIS_URL": redis_server.url, "DATABASE_URL": database_url,
           "CONVEYOR_VAR_DIR": scratch, "CONVEYOR_LEASE_SECONDS": "10", "CONVEYOR_RECONCILE_INTERVAL": "2",
           "CONVEYOR_PROGRESS_INTERVAL": "0.5", "PYTHONPATH": str(ROOT)}
    os.environ.update({k: env[k] for k in ("CONVEYOR_BROKER", "REDIS_URL", "DATABASE_URL", "CONVEYOR_VAR_DIR")})
    from sqlalchemy.exc import OperationalError

    from pipelines.services.jobs import start_job
    from pipelines.store.migrate import upgrade

    upgrade(database_url)
    log = Path(scratch) / "workers.log"
    workers = [start_worker(env, log), start_worker(env, log)]
    started = time.monotonic()
    deadline = started + args.bound
    ids: list[str] = []
    faults: list[str] = []
    next_kill, redis_done, postgres_done, victim = started + KILL_EVERY, False, False, 0
    while len(ids) < args.jobs:
        now = time.monotonic()
        if now > deadline:
            raise SystemExit("the soak exceeded its time bound while submitting")
        if now >= next_kill:
            kill(workers[victim])
            workers[victim] = start_worker(env, log)
            faults.append(f"{now - started:5.1f} s SIGKILL a worker process")
            victim, next_kill = 1 - victim, now + KILL_EVERY
        if not redis_done and now - started >= REDIS_RESTART_AT:
            redis_server.stop()
            redis_server.start()
            faults.append(f"{now - started:5.1f} s Redis restarted (every message lost)")
            redis_done = True
        if not postgres_done and now - started >= POSTGRES_RESTART_AT:
            restart_postgres()
            faults.append(f"{now - started:5.1f} s PostgreSQL restarted")
            postgres_done = True
        try:
            ids.append(start_job(pipeline="demo", input={"items": 4, "sleep": 0.05})["id"])
        except OperationalError:  # the database is restarting: the request is refused, nothing accepted
            time.sleep(0.2)
            continue
        time.sleep(max(0.0, started + len(ids) / args.rate - time.monotonic()))
    submitted_at = time.monotonic()
    print(f"submitted {len(ids)} jobs in {submitted_at - started:.0f} s", flush=True)
    report = wait_and_count(ids, min(deadline, submitted_at + STUCK_AFTER), database_url)
    for worker in workers:
        kill(worker)
    print("faults:")
    for fault in faults:
        print(f"  {fault}")
    durations = report.pop("durations")
    print(f"job duration p50 {p50(durations):.2f} s, p99 {percentile(durations, 99):.2f} s, "
          f"max {max(durations):.2f} s")
    print(f"p99 delay a fault added: {percentile(durations, 99) - p50(durations):.2f} s")
    print(f"jobs lost: {report['lost']}")
    print(f"stages completed twice: {report['twice']}")
    print(f"jobs stuck: {report['stuck']}")
    print(f"jobs completed: {report['completed']}, failed: {report['failed']}")


def wait_and_count(ids: list[str], deadline: float, database_url: str) -> dict:
    import psycopg

    while True:
        try:
            with psycopg.connect(database_url) as db:
                row = db.execute("SELECT count(*) FROM jobs WHERE id = ANY(%s) AND status IN "
                                 "('pending', 'processing')", (ids,)).fetchone()
                assert row is not None, "a count(*) answers one row"
                open_jobs = row[0]
                if open_jobs == 0 or time.monotonic() > deadline:
                    return count(db, ids)
        except psycopg.OperationalError:
            pass
        time.sleep(1.0)


def count(db, ids: list[str]) -> dict:
    rows = dict(db.execute("SELECT status, count(*) FROM jobs WHERE id = ANY(%s) GROUP BY status", (ids,)).fetchall())
    found = sum(rows.values())
    twice = db.execute(
        "SELECT count(*) FROM (SELECT job_id, data->>'stage' FROM job_events WHERE job_id = ANY(%s) "
        "AND kind = 'stage' AND data->>'status' = 'completed' GROUP BY 1, 2 HAVING count(*) > 1) AS t",
        (ids,)).fetchone()[0]
    no_result = db.execute("SELECT count(*) FROM jobs WHERE id = ANY(%s) AND status = 'completed' AND result IS NULL",
                           (ids,)).fetchone()[0]
    durations = [row[0] for row in db.execute(
        "SELECT extract(epoch FROM finished_at - created_at)::float8 FROM jobs WHERE id = ANY(%s) "
        "AND finished_at IS NOT NULL", (ids,)).fetchall()]
    return {"lost": len(ids) - found + no_result, "twice": twice,
            "stuck": rows.get("pending", 0) + rows.get("processing", 0),
            "completed": rows.get("completed", 0), "failed": rows.get("failed", 0), "durations": durations or [0.0]}


if __name__ == "__main__":
    main()
