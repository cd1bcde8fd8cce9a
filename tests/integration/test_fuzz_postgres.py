"""The schemathesis suite and the NUL-character checks of tests/security, against PostgreSQL.

PostgreSQL refuses what SQLite stores (U+0000 in text and JSON): issue 14 found 12 routes that
answered 500 only there. The same test functions run here with this run's PostgreSQL database
(from tests/integration/conftest.py) instead of a SQLite file; only the fixtures differ.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from conveyor.config import configure, load_settings
from pipelines.services.users import forget_cached_tokens
from tests.security.test_fuzz import (  # noqa: F401 - collected here, on PostgreSQL
    test_every_operation_is_fuzzed,
    test_no_request_gets_a_server_error_or_an_answer_outside_the_schema,
)
from tests.security.test_nul_characters import (  # noqa: F401 - collected here, on PostgreSQL
    test_a_nul_in_a_job_body_is_refused,
    test_a_nul_in_a_path_or_query_is_refused,
    test_a_nul_in_an_id_of_a_post_is_refused,
    test_a_nul_in_the_idempotency_key_is_refused,
    test_the_python_api_refuses_nul_too,
)
from tests.support.web import auth, client, user  # noqa: F401 - fixtures


@pytest.fixture
def db(tmp_path: Path) -> Iterator[str]:
    """This run's PostgreSQL database (migrated by the session fixture), files under ``tmp_path``."""
    settings = configure(load_settings({**os.environ, "STORAGE_URL": f"file://{tmp_path / 'files'}"}))
    assert settings.database_url.startswith("postgresql+psycopg://"), settings.database_url
    yield settings.database_url
    configure()


@pytest.fixture
def stub_broker() -> None:
    """The run's Redis broker stands in: the suite sends a few demo messages that no worker runs."""


@pytest.fixture
def app(db: str) -> Iterator[Flask]:
    from web.app import create_app

    forget_cached_tokens()
    yield create_app({"TESTING": True, "JOB_RATE_LIMIT": "100000/minute", "RATELIMIT_STORAGE_URI": "memory://"})
    forget_cached_tokens()
