"""Schema migrations (Alembic), run by ``conveyor db upgrade`` and the Procfile's release phase."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from conveyor.config import settings

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(database_url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", (database_url or settings().database_url).replace("%", "%%"))
    return config


def upgrade(database_url: str | None = None, revision: str = "head") -> None:
    """Bring the database to ``revision`` (default: the newest)."""
    command.upgrade(alembic_config(database_url), revision)
    analyze(database_url or settings().database_url)


def analyze(database_url: str) -> None:
    """Give PostgreSQL's planner statistics: plans made on never-analyzed tables may pick a status
    index over the primary key for the engine's by-id updates (five times slower per claim)."""
    from sqlalchemy import create_engine, text

    from conveyor.config import normalize_database_url

    database_url = normalize_database_url(database_url)
    if not database_url.startswith("postgresql"):
        return
    engine = create_engine(database_url)
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("ANALYZE jobs, stage_runs, job_events"))
    finally:
        engine.dispose()


def downgrade(database_url: str | None = None, revision: str = "base") -> None:
    command.downgrade(alembic_config(database_url), revision)


def is_current(database_url: str | None = None) -> bool:
    """Whether the database exists and is at the newest revision (False for one without tables)."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from pipelines.store.db import get_engine, make_engine

    head = ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()
    engine = make_engine(database_url) if database_url else get_engine()
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision() == head
