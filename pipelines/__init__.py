"""Jobs and their state: pipeline definitions, the job store, the engine and the reconciler.

Importing this package (or any module in it) sets nothing up: :func:`pipelines.worker.setup`, the
composition root, builds the broker, installs the engine's middleware and registers every
pipeline. ``dramatiq pipelines.worker:setup`` starts a complete worker.
"""
