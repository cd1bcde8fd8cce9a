"""The Alembic migrations build exactly the schema the models describe, and run down and up again."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, select, text

from pipelines.store.migrate import downgrade, upgrade
from pipelines.store.models import Base


def test_migrations_match_the_models_and_downgrade_cleanly(tmp_path):
    url = f"sqlite:///{tmp_path / 'migrated.db'}"
    upgrade(url)
    engine = create_engine(url)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []
    downgrade(url)
    assert set(inspect(create_engine(url)).get_table_names()) <= {"alembic_version"}
    upgrade(url)
    assert {"jobs", "stage_runs", "job_events", "files", "users"} <= set(inspect(create_engine(url)).get_table_names())


def test_jobs_written_before_warnings_and_metadata_read_with_none_of_either(tmp_path):
    # Given a job written by the schema before revision 0005
    url = f"sqlite:///{tmp_path / 'older.db'}"
    upgrade(url, "0004")
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO jobs (id, pipeline, status, attempt, progress, created_at, updated_at) "
                                "VALUES ('j1', 'noop_chain', 'completed', 1, 100.0, '2026-12-01', '2026-12-01')"))
    # When the schema is upgraded
    upgrade(url)
    # Then the job has an empty warnings list and no metadata
    with engine.connect() as connection:
        row = connection.execute(select(Base.metadata.tables["jobs"]).where(text("id = 'j1'"))).one()
    assert (row.warnings, row.meta) == ([], None)
