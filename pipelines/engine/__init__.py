"""The engine: the job state machine, the worker middleware, hand-offs, progress and the reconciler."""
