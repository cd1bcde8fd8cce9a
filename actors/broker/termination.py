"""A worker process takes a SIGTERM that reaches it twice at once as one request to stop gracefully.

Heroku, and systemd's default ``KillMode``, send SIGTERM to every process of the worker at once.
Dramatiq's main process then forwards its own SIGTERM to each worker process, which so receives
two within milliseconds and takes the second as "kill now": running stages are not handed back
and run again only once their leases lapse. Here a SIGTERM that follows the first within
:data:`DUPLICATE_WINDOW` is ignored; a later one still kills at once, as Dramatiq intends.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import dramatiq

logger = logging.getLogger(__name__)

#: s; a second SIGTERM this soon after the first is the same request, not "kill now".
DUPLICATE_WINDOW = 1.0


def tolerate_duplicate_sigterm(handler: Callable[[int, FrameType | None], Any]) -> Callable[[int, FrameType | None],
                                                                                             Any]:
    """Wrap a SIGTERM handler so that a repeat within :data:`DUPLICATE_WINDOW` of the first is ignored."""
    first: list[float] = []

    def on_sigterm(signum: int, frame: FrameType | None) -> Any:
        now = time.monotonic()
        if first and now - first[0] < DUPLICATE_WINDOW:
            logger.info("Ignoring a repeated SIGTERM %.3f s after the first: still stopping gracefully",
                        now - first[0])
            return None
        first[:] = [now]
        return handler(signum, frame)

    return on_sigterm


class DuplicateSigtermGuard(dramatiq.Middleware):
    """Installs :func:`tolerate_duplicate_sigterm` around the SIGTERM handler of a ``dramatiq`` worker process."""

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        current = signal.getsignal(signal.SIGTERM)
        # Only Dramatiq's own worker-process handler: elsewhere (a web process, a test) leave signals alone.
        if callable(current) and getattr(current, "__module__", None) == "dramatiq.cli":
            signal.signal(signal.SIGTERM, tolerate_duplicate_sigterm(current))
