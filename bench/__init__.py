"""Benchmarks: a package, as its modules import one another (and workers load them) as ``bench.…``."""
