"""The work: Dramatiq actors (stages), providers, media helpers and the broker set-up.

Actors know no database and no HTTP request: a stage takes small JSON arguments and
returns a small JSON result; files move through :mod:`actors.storage` by key.
"""

from actors import broker as _broker  # noqa: F401 - sets the broker before any actor is declared
