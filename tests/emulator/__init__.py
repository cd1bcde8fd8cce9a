"""Provider emulators for tests: a local HTTP server speaking each provider's API shape.

Use :func:`start_emulator` with provider blueprints, or the :func:`emulator` fixture, a factory
whose emulators stop at the end of the test::

    from tests.emulator import emulator  # noqa: F401  (the fixture)

    def test_something(emulator):
        emu = emulator(luma_blueprint())
        emu.fail_next("/dream-machine", 429, headers={"Retry-After": "1"})
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from flask import Blueprint

from tests.emulator.server import (
    CANCELED,
    DONE,
    FAILED,
    PENDING,
    RUNNING,
    Call,
    EmulatedJob,
    Emulator,
    JobStore,
    start_emulator,
)

__all__ = [
    "CANCELED",
    "DONE",
    "FAILED",
    "PENDING",
    "RUNNING",
    "Call",
    "EmulatedJob",
    "Emulator",
    "JobStore",
    "emulator",
    "start_emulator",
]


@pytest.fixture
def emulator() -> Iterator[Callable[..., Emulator]]:
    """A factory ``emulator(*blueprints)`` of running emulators, all stopped after the test."""
    started: list[Emulator] = []

    def start(*blueprints: Blueprint) -> Emulator:
        emu = start_emulator(*blueprints)
        started.append(emu)
        return emu

    yield start
    for emu in started:
        emu.stop()
