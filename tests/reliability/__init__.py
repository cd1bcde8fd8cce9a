"""Reliability tests: faults against real worker processes, Redis and PostgreSQL (run in their own process)."""
