"""The job store's schema as the commands see it: brought up to date, or checked before a command uses it."""

from __future__ import annotations

import shutil
from pathlib import Path

from conveyor.config import settings
from conveyor.errors import ConfigError
from pipelines.store.db import dispose_all
from pipelines.store.migrate import is_current
from pipelines.store.migrate import upgrade as upgrade_schema


def upgrade() -> None:
    """Create or migrate the configured database to the newest schema."""
    upgrade_schema()


def ready_for_use() -> None:
    """Make sure the job store has its tables: SQLite (the local default) is created or upgraded here;
    any other database must have been upgraded with ``conveyor db upgrade``. Folders made for a SQLite
    database that could not be created are removed again.

    Raises:
      ConfigError: a database other than SQLite without tables or with an old schema.
    """
    url = settings().database_url
    if not url.startswith("sqlite"):
        if not is_current():
            raise ConfigError("the database has no tables or an old schema: run `conveyor db upgrade`")
        return
    path = Path(url.split("///", 1)[-1])
    missing = next((p for p in reversed([path.parent, *path.parent.parents]) if not p.exists()), None)
    try:
        upgrade_schema()
    except Exception:
        dispose_all()
        if missing is not None:
            shutil.rmtree(missing, ignore_errors=True)
        raise
