"""Shared foundations of Conveyor: configuration and the Python client."""
