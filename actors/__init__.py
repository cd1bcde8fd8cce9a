"""The work: Dramatiq actors (stages), providers, media helpers and the broker set-up.

Actors know no database and no HTTP request: a stage takes small JSON arguments and
returns a small JSON result; files move through :mod:`actors.files.storage` by key. Importing an
actor module declares its actors and nothing else: ``pipelines.worker.setup`` binds them to a broker.
"""
