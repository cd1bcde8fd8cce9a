"""Bearer tokens: stored hashed, required on every /api/ route, refused in query strings."""

from __future__ import annotations

import hashlib

from sqlalchemy import select

from pipelines.services.users import create_user, user_for_token
from pipelines.store.db import transaction
from pipelines.store.models import User


def test_tokens_are_stored_only_as_their_sha256(db):
    user = create_user("carol")
    with transaction() as session:
        stored = session.scalars(select(User).where(User.id == user.id)).one()
    assert stored.token_hash == hashlib.sha256(user.token.encode()).hexdigest()
    assert user.token not in stored.token_hash
    assert user_for_token(user.token) == user.id
    assert user_for_token(user.token + "x") is None
    assert user_for_token("") is None


def test_api_routes_answer_401_without_a_valid_bearer_token(client, user):
    routes = [("GET", "/api/jobs"), ("POST", "/api/jobs"), ("GET", "/api/jobs/abc"), ("GET", "/api/pipelines"),
              ("GET", "/api/stats"), ("POST", "/api/files"), ("GET", "/api/files/abc"),
              ("GET", "/api/notifications"), ("GET", "/api/jobs/abc/events")]
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {user.token}"},
                    {"Authorization": "Bearer"}):
        for method, path in routes:
            response = client.open(path, method=method, headers=headers)
            assert response.status_code == 401, (method, path, headers)
            assert response.mimetype == "application/problem+json"
            assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_token_in_the_query_string_is_refused_even_when_valid(client, user):
    for name in ("token", "access_token", "api_key"):
        response = client.get(f"/api/jobs?{name}={user.token}")
        assert response.status_code == 401
        assert "Authorization header" in response.get_json()["detail"]
    # ...also next to a valid header
    response = client.get(f"/api/jobs?token={user.token}", headers={"Authorization": f"Bearer {user.token}"})
    assert response.status_code == 401


def test_the_users_create_command_prints_the_token_alone_on_its_last_line(db):
    from click.testing import CliRunner

    from web.cli import main

    result = CliRunner().invoke(main, ["users", "create", "dana"])
    assert result.exit_code == 0, result.output
    token = result.output.strip().splitlines()[-1]
    assert token.startswith("cvy_") and " " not in token
    assert user_for_token(token) is not None
