"""Install sizes: the base, ``[local]`` and ``[dev]``, each in a fresh virtualenv, site-packages raw and gzipped.

    python bench/install_sizes.py

The base must stay under 300 MB gzipped (a Heroku slug's limit is 500 MB with the Python runtime);
``scripts/install_size.py`` does one measurement and ``make install-size`` checks the base in CI.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIMIT_MB = 300


def main() -> int:
    failed = 0
    for extras in ("", "local", "dev"):
        command = [sys.executable, "scripts/install_size.py", "--extras", extras]
        if not extras:
            command += ["--max-gzip-mb", str(LIMIT_MB)]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
        print(done.stdout.strip() or done.stderr.strip()[-2000:], flush=True)
        failed += done.returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
