"""Fast unit tests: Dramatiq's StubBroker, SQLite in a temporary folder, worker threads in-process.

Integration tests against real Redis and PostgreSQL live in tests/integration and run in
their own pytest process (the broker is chosen when actors are first imported).
"""

from __future__ import annotations

import os
import tempfile

_VAR = tempfile.mkdtemp(prefix="conveyor-tests-")
os.environ.setdefault("CONVEYOR_BROKER", "stub")
os.environ.setdefault("CONVEYOR_VAR_DIR", _VAR)
os.environ.setdefault("CONVEYOR_PROGRESS_INTERVAL", "0")
os.environ.setdefault("CONVEYOR_LEASE_SECONDS", "10")
os.environ.setdefault("CONVEYOR_RECONCILE_INTERVAL", "0.5")


from tests.support import *  # noqa: E402,F401,F403 - shared fixtures
