"""Fresh clone to printed lecture notes: ``git clone`` then ``make demo``, with uv and with pip.

    python bench/first_install.py

Clones this repository's HEAD into a temporary folder and times ``make demo`` there (a new
virtualenv, the install of ``.[local,dev]``, the demo), once with ``INSTALLER=uv`` (the default)
and once with ``INSTALLER=pip``. Caches are whatever this machine has: run it twice for warm ones.
Target: 90 s or less with uv and a warm cache.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 90.0


def first_install(installer: str) -> tuple[float, str]:
    """Seconds from ``git clone`` to the notes printed by ``make demo``, and how it installed."""
    with tempfile.TemporaryDirectory(prefix="conveyor-clone-") as tmp:
        clone = Path(tmp) / "conveyor"
        started = time.monotonic()
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=120)
        done = subprocess.run(["make", "demo", f"INSTALLER={installer}"], cwd=clone, capture_output=True, text=True,
                              timeout=900)
        elapsed = time.monotonic() - started
    if done.returncode != 0 or "Key takeaways" not in done.stdout:
        raise SystemExit(f"make demo with {installer} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    used = next((line for line in done.stdout.splitlines() if " with " in line and ".[" in line), installer)
    return elapsed, used.strip()


def main() -> int:
    results = {installer: first_install(installer) for installer in ("uv", "pip")}
    for installer, (seconds, used) in results.items():
        print(f"{installer:>3}: {seconds:5.0f} s from git clone to printed notes ({used})")
    uv_seconds = results["uv"][0]
    verdict = "within" if uv_seconds <= TARGET_SECONDS else "OVER"
    print(f"uv {verdict} the {TARGET_SECONDS:.0f} s target; pip/uv time ratio: {results['pip'][0] / uv_seconds:.2f}")
    return 0 if verdict == "within" else 1


if __name__ == "__main__":
    sys.exit(main())
