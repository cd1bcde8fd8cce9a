"""Maintenance scripts, run as files (python scripts/NAME.py); a package so the tests can borrow scripts.dev_server."""
