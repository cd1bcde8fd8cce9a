"""The per-user limit on job creation, with the ``limits`` library (the engine of Flask-Limiter).

Only ``POST /api/jobs`` is limited, so the check runs there and nowhere else: Flask-Limiter's
extension evaluates its rules in a hook on every request, which cost about 0.4 ms of each
job poll. Counters live in the broker's Redis when ``REDIS_URL`` is set (shared by every web
process), else in this process's memory. A broken counter store never blocks submissions.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from flask import Flask, current_app
from limits import RateLimitItem, parse
from limits.storage import storage_from_string
from limits.strategies import SlidingWindowCounterRateLimiter

from web.errors import Problem

logger = logging.getLogger(__name__)

EXTENSION = "conveyor_job_limiter"


class JobRateLimit:
    """``limit`` (e.g. ``"60/minute"``) job creations per user, sliding window."""

    def __init__(self, limit: str, storage_uri: str) -> None:
        self.item: RateLimitItem = parse(limit)
        self.storage: Any = storage_from_string(storage_uri)
        self.limiter = SlidingWindowCounterRateLimiter(self.storage)

    def check(self, user_id: str) -> None:
        """Count one job creation; raise a 429 Problem with Retry-After when over the limit."""
        try:
            if self.limiter.hit(self.item, "jobs", user_id):
                return
            window = self.storage.get_sliding_window(self.item.key_for("jobs", user_id), self.item.get_expiry())
            wait = max(1, math.ceil(seconds_until_admitted(*window, amount=self.item.amount,
                                                           period=self.item.get_expiry())))
        except Problem:
            raise
        except Exception:
            logger.warning("The job rate limit store failed; letting the request through", exc_info=True)
            return
        raise Problem(429, f"Too many jobs started ({self.item}); try again in {wait} s.",
                      headers={"Retry-After": str(wait)})


def seconds_until_admitted(previous: int, previous_expires_in: float, current: int, current_expires_in: float, *,
                           amount: int, period: float) -> float:
    """Seconds until the sliding window admits one more request, from the counts the limiter weighs.

    Both stores (in memory for ``conveyor dev``, Redis in production) admit one more while
    ``floor(previous * previous_expires_in / period) + current + 1 <= amount``, that is while the
    weighted count is below ``amount``, and give the current window's counter a time to live of
    its remaining time plus one period (it becomes the previous window). Computed here the same
    way for both, Retry-After is when a retry is admitted (the limiter's own reset time is not:
    ``previous_expires_in % (period / previous)`` can be seconds when a minute is needed).
    """
    left = current_expires_in - period if current_expires_in >= period else current_expires_in
    room = amount - current
    if room >= 1:
        if previous <= 0 or previous * previous_expires_in / period < room:
            return 0.0
        wait = previous_expires_in - room * period / previous
        if wait < left:
            return wait
    # Only once this window has become the previous one, weighing less as it slides out.
    later = period - amount * period / current if current > amount else 0.0
    return left + later


def install(app: Flask) -> None:
    app.extensions[EXTENSION] = JobRateLimit(app.config["JOB_RATE_LIMIT"], app.config["RATELIMIT_STORAGE_URI"])


def check_job_rate(user_id: str) -> None:
    current_app.extensions[EXTENSION].check(user_id)
