"""The per-user limit on job creation, with the ``limits`` library (the engine of Flask-Limiter).

Only ``POST /api/jobs`` is limited, so the check runs there and nowhere else: Flask-Limiter's
extension evaluates its rules in a hook on every request, which cost about 0.4 ms of each
job poll. Counters live in the broker's Redis when ``REDIS_URL`` is set (shared by every web
process), else in this process's memory. A broken counter store never blocks submissions.
"""

from __future__ import annotations

import logging
import math
import time

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
        self.limiter = SlidingWindowCounterRateLimiter(storage_from_string(storage_uri))

    def check(self, user_id: str) -> None:
        """Count one job creation; raise a 429 Problem with Retry-After when over the limit."""
        try:
            if self.limiter.hit(self.item, "jobs", user_id):
                return
            stats = self.limiter.get_window_stats(self.item, "jobs", user_id)
            wait = max(1, math.ceil(stats.reset_time - time.time()))
        except Problem:
            raise
        except Exception:
            logger.warning("The job rate limit store failed; letting the request through", exc_info=True)
            return
        raise Problem(429, f"Too many jobs started ({self.item}); try again in {wait} s.",
                      headers={"Retry-After": str(wait)})


def install(app: Flask) -> None:
    app.extensions[EXTENSION] = JobRateLimit(app.config["JOB_RATE_LIMIT"], app.config["RATELIMIT_STORAGE_URI"])


def check_job_rate(user_id: str) -> None:
    current_app.extensions[EXTENSION].check(user_id)
