"""The built-in pipelines, declared with :mod:`pipelines.definition`: declarations only."""
