"""Fixtures of the web tests: an app on the test database, a client, signed-in users."""

from tests.support.web import app, auth, base_url, client, other_user, served_url, user  # noqa: F401 - fixtures
