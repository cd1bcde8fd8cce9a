"""Running a stage's body outside the engine, and keeping what it reported."""

from __future__ import annotations

from typing import Any


class Recorder:
    """A stage reporter that keeps every progress fraction and message."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.fractions: list[float] = []

    def report_progress(self, fraction: float, message: str | None) -> None:
        self.fractions.append(fraction)
        if message:
            self.messages.append(message)

    def save_checkpoint(self, values: dict[str, Any]) -> None:
        pass

    def warn(self, code: str, message: str) -> None:
        pass
