"""One policy for a database that cannot be reached, on the hot path (psycopg) and elsewhere (SQLAlchemy)."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from pipelines.store.db import unreachable, while_unreachable


def failing(times: int, error: Exception):
    calls = []

    def call() -> str:
        calls.append(1)
        if len(calls) <= times:
            raise error
        return "written"
    return call, calls


@pytest.mark.parametrize("error", [psycopg.OperationalError("server closed the connection"),
                                   OperationalError("SELECT 1", {}, Exception("connection refused"))])
def test_a_write_is_tried_again_while_the_database_cannot_be_reached(error):
    call, calls = failing(2, error)
    assert unreachable(error)
    assert while_unreachable(call, what="test") == "written" and len(calls) == 3


def test_a_failing_statement_is_not_tried_again():
    error = IntegrityError("INSERT", {}, Exception("duplicate key"))
    call, calls = failing(1, error)
    assert not unreachable(error)
    with pytest.raises(IntegrityError):
        while_unreachable(call, what="test")
    assert len(calls) == 1


def test_patience_runs_out():
    call, calls = failing(100, psycopg.OperationalError("down"))
    with pytest.raises(psycopg.OperationalError):
        while_unreachable(call, what="test", patience=0.35)
    assert 2 <= len(calls) <= 4  # 0.1 s, 0.2 s, then the deadline
