"""The web tests' fixtures and calls: an app on the test database, a client, signed-in users, a served app."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from pipelines.services.users import NewUser, create_user, forget_cached_tokens


@pytest.fixture
def app(db: str, stub_broker) -> Iterator[Flask]:
    from web.app import create_app

    forget_cached_tokens()
    app = create_app({"TESTING": True, "JOB_RATE_LIMIT": "1000/minute"})
    yield app
    forget_cached_tokens()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def user(db: str) -> NewUser:
    return create_user("alice")


@pytest.fixture
def other_user(db: str) -> NewUser:
    return create_user("bob")


def bearer(user: NewUser) -> dict[str, str]:
    return {"Authorization": f"Bearer {user.token}"}


@pytest.fixture
def auth(user: NewUser) -> dict[str, str]:
    return bearer(user)


@pytest.fixture
def served_url(app: Flask) -> Iterator[str]:
    """The app served over HTTP on a free loopback port, with no worker: the jobs it starts stay queued."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture
def base_url(served_url: str, stub_worker) -> str:
    """The app served over HTTP on a free loopback port, with a worker running its jobs."""
    return served_url


def submit(client: FlaskClient, auth: dict[str, str], pipeline: str = "demo", **job: Any) -> Any:
    response = client.post("/api/jobs", json={"pipeline": pipeline, "input": job.pop("input", {}), **job},
                           headers=auth)
    assert response.status_code == 202, response.get_json()
    return response.get_json()
