"""Run every benchmark in bench/ and write docs/benchmarks.md with the machine, versions and results.

    make bench

Each benchmark is a script with a fixed size and a time bound that prints its ratio against a
baseline measured in the same run on its last line.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: (script, what it measures, time bound in s)
BENCHMARKS = [
    ("bench/engine.py", "The engine vs bare Dramatiq and Celery: 4-stage chains, 100-item fan-outs, hand-off latency",
     1200),
    ("bench/api_polling.py", "GET /api/jobs/{id} under 50 pollers vs a bare Flask endpoint; event streams held", 900),
    ("bench/audio_memory.py", "Worker peak memory preparing and splitting a 2-hour lecture", 900),
    ("bench/chaos.py", "Chaos soak: 2,000 demo jobs through worker SIGKILLs, a Redis and a PostgreSQL restart", 900),
    ("bench/install_sizes.py", "Install sizes: base, [local] and [dev] site-packages, raw and gzipped", 1800),
    ("bench/first_install.py", "Fresh clone to printed notes (make demo), with uv and with pip", 1800),
]


def _service_versions() -> list[str]:
    lines = []
    for command, label in ((["redis-server", "--version"], "Redis"), (["psql", "--version"], "PostgreSQL client")):
        try:
            lines.append(f"{label}: {subprocess.run(command, capture_output=True, text=True).stdout.strip()}")
        except OSError:
            lines.append(f"{label}: not found")
    return lines


#: Everything after this line of docs/benchmarks.md is kept when the file is written again.
KEPT = "<!-- kept by bench/run_all.py -->"


def main() -> int:
    packages = ["dramatiq", "sqlalchemy", "psycopg", "redis", "flask", "gunicorn", "gevent"]
    report = [
        "# Benchmarks", "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `make bench` on {platform.node()}: "
        f"{os.cpu_count()} cores, {platform.machine()}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}.", "",
        "Versions: " + ", ".join(f"{p} {version(p)}" for p in packages) + ".", "",
        *[f"- {line}" for line in _service_versions()], "",
        "Each benchmark measures its own baseline in the same run; ratios compare the two.", "",
    ]
    failed = 0
    for script, title, bound in BENCHMARKS:
        print(f"== {script}", flush=True)
        started = time.monotonic()
        try:
            done = subprocess.run([sys.executable, script], cwd=ROOT, capture_output=True, text=True, timeout=bound)
            output, code = done.stdout.strip(), done.returncode
        except subprocess.TimeoutExpired:
            output, code = f"timed out after {bound}s", 1
        print(output, flush=True)
        failed += code != 0
        report += [f"## {title}", "", f"`{script}` ({time.monotonic() - started:.0f} s, exit {code})", "",
                   "```", output or "(no output)", "```", ""]
    target = ROOT / "docs" / "benchmarks.md"
    kept = target.read_text().partition(KEPT)[2] if target.is_file() else ""
    if kept:  # measurements made by hand (bench/notes_eval.py), kept as they are
        report += [KEPT + kept.rstrip("\n"), ""]
    target.write_text("\n".join(report))
    print("wrote docs/benchmarks.md")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
