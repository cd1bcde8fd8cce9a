"""Fixtures of the security tests: the web tests' app, client and users, and observers of the network.

These run in the unit-test process (StubBroker, SQLite, in-process worker threads); the one test
that needs a real Redis (the canary key) runs its worker and API in a process of its own.
"""

from __future__ import annotations

from tests.security.network import connects, dns, listener  # noqa: F401 - fixtures
from tests.web.conftest import app, auth, client, other_user, user  # noqa: F401 - fixtures
