"""How big an install of Conveyor is: a fresh virtualenv, its site-packages measured raw and gzipped.

    python scripts/install_size.py                    # the base install (web, engine, cloud providers)
    python scripts/install_size.py --extras local     # with the local AI providers
    python scripts/install_size.py --max-gzip-mb 300  # exit 1 when the gzipped size is over 300 MB

The project is installed as a deployment installs it (``pip install .``, not editable) into a new
virtualenv, with uv when it sits beside this Python (``make install`` puts it there), else pip.
"Gzipped" is the size of site-packages as a tar.gz at gzip's default level 6, as a Heroku slug is
packed (its limit is 500 MB compressed, the Python runtime included). Nothing is written but the
virtualenv, which is removed at the end unless ``--keep`` names a folder for it.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MB = 1_000_000
GZIP_LEVEL = 6  #: gzip's default, as slugs are packed


class _Counter:
    """A write-only file that only counts the bytes written to it."""

    def __init__(self) -> None:
        self.size = 0

    def write(self, data: bytes) -> int:
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        pass


def uv_executable() -> str | None:
    """uv beside this Python (a ``make install`` virtualenv), else on PATH, else None."""
    beside = Path(sys.executable).parent / "uv"
    return str(beside) if beside.is_file() else shutil.which("uv")


def create_venv(venv: Path, requirement: str) -> str:
    """Make a virtualenv at ``venv`` and install ``requirement`` into it; returns the installer used."""
    uv = uv_executable()
    if uv:
        subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
        subprocess.run([uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), requirement],
                       check=True)
        return "uv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--quiet",
                    requirement], check=True)
    return "pip"


def site_packages(venv: Path) -> Path:
    found = sorted(venv.glob("lib/python3*/site-packages"))
    if not found:
        raise SystemExit(f"no site-packages under {venv}")
    return found[0]


@dataclass(frozen=True)
class Sizes:
    raw: int  #: bytes of the files
    gzip: int  #: bytes of their tar.gz
    files: int
    largest: list[tuple[str, int]]  #: the largest top-level entries (packages) and their raw bytes


def measure(folder: Path) -> Sizes:
    """Raw bytes, gzipped tar bytes, file count and the largest top-level entries of ``folder``."""
    raw = 0
    files = 0
    by_entry: Counter[str] = Counter()
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            size = path.stat().st_size
            raw += size
            files += 1
            by_entry[path.relative_to(folder).parts[0]] += size
    sink = _Counter()
    with tarfile.open(fileobj=sink, mode="w:gz", compresslevel=GZIP_LEVEL) as tar:  # type: ignore[call-overload]
        tar.add(folder, arcname="site-packages")
    return Sizes(raw, sink.size, files, by_entry.most_common(8))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--extras", default="", help="comma-separated extras, e.g. local or dev (default: none)")
    parser.add_argument("--max-gzip-mb", type=float, default=None, help="fail above this gzipped size (MB)")
    parser.add_argument("--keep", type=Path, default=None, help="create the virtualenv here and keep it")
    args = parser.parse_args(argv)

    requirement = f"{ROOT}[{args.extras}]" if args.extras else str(ROOT)
    label = f"conveyor[{args.extras}]" if args.extras else "conveyor (base)"
    with tempfile.TemporaryDirectory(prefix="conveyor-size-") as tmp:
        venv = args.keep or Path(tmp) / "venv"
        if venv.exists():
            raise SystemExit(f"{venv} exists; name a new folder")
        started = time.monotonic()
        installer = create_venv(venv, requirement)
        installed = time.monotonic() - started
        sizes = measure(site_packages(venv))
    print(f"{label}: installed with {installer} in {installed:.0f} s; site-packages {sizes.files} files, "
          f"{sizes.raw / MB:.0f} MB raw, {sizes.gzip / MB:.0f} MB gzipped")
    print("  largest: " + ", ".join(f"{name} {size / MB:.0f} MB" for name, size in sizes.largest))
    if args.max_gzip_mb is not None:
        verdict = "within" if sizes.gzip <= args.max_gzip_mb * MB else "OVER"
        print(f"  {verdict} the {args.max_gzip_mb:.0f} MB gzipped limit")
        if verdict == "OVER":
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
