"""Per-user rate limits of job creation and uploads, with the ``limits`` library (the engine of Flask-Limiter).

Only ``POST /api/jobs`` and ``POST /api/files`` are limited, so the checks run there and nowhere else: Flask-Limiter's
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

EXTENSION = "conveyor_limiters"


class RateLimit:
    """``limit`` (e.g. ``"60/minute"``) of one kind of use per user, sliding window.

    ``name`` is the limit's name in the problem document (``limit``) and ``setting`` the
    environment variable that sets it, both told in the 429 answer.
    """

    def __init__(self, limit: str, storage: Any, *, name: str, what: str, setting: str) -> None:
        self.item: RateLimitItem = parse(limit)
        self.storage = storage
        self.limiter = SlidingWindowCounterRateLimiter(storage)
        self.name, self.what, self.setting = name, what, setting

    def check(self, user_id: str, cost: int = 1) -> None:
        """Count ``cost`` uses; raise a 429 Problem with Retry-After when over the limit."""
        try:
            if self.limiter.hit(self.item, self.name, user_id, cost=cost):
                return
            window = self.storage.get_sliding_window(self.item.key_for(self.name, user_id), self.item.get_expiry())
            wait = max(1, math.ceil(seconds_until_admitted(*window, amount=self.item.amount,
                                                           period=self.item.get_expiry(), cost=cost)))
        except Problem:
            raise
        except Exception:
            logger.warning("The %s rate limit store failed; letting the request through", self.name, exc_info=True)
            return
        raise Problem(429, f"Too many {self.what} ({self.item}, {self.setting}); try again in {wait} s.",
                      headers={"Retry-After": str(wait)}, limit=self.name)


def seconds_until_admitted(previous: int, previous_expires_in: float, current: int, current_expires_in: float, *,
                           amount: int, period: float, cost: int = 1) -> float:
    """Seconds until the sliding window admits one more request, from the counts the limiter weighs.

    Both stores (in memory for ``conveyor dev``, Redis in production) admit one more while
    ``floor(previous * previous_expires_in / period) + current + cost <= amount``, that is while the
    weighted count is below ``amount - cost + 1``, and give the current window's counter a time to live of
    its remaining time plus one period (it becomes the previous window). Computed here the same
    way for both, Retry-After is when a retry is admitted (the limiter's own reset time is not:
    ``previous_expires_in % (period / previous)`` can be seconds when a minute is needed).
    """
    left = current_expires_in - period if current_expires_in >= period else current_expires_in
    amount -= cost - 1  # a request of ``cost`` fits where ``cost - 1`` more single ones would have
    if amount < 1:
        return period  # more than the limit on its own: it never fits; say so as the longest wait
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
    storage = storage_from_string(app.config["RATELIMIT_STORAGE_URI"])
    app.extensions[EXTENSION] = {
        "jobs": RateLimit(app.config["JOB_RATE_LIMIT"], storage, name="job_rate",
                          what="jobs started", setting="CONVEYOR_JOB_RATE_LIMIT"),
        "uploads": RateLimit(app.config["UPLOAD_RATE_LIMIT"], storage, name="upload_rate",
                             what="uploads", setting="CONVEYOR_UPLOAD_RATE_LIMIT"),
        "upload_bytes": RateLimit(f"{app.config['UPLOAD_BYTES_PER_HOUR']}/hour", storage, name="upload_bytes",
                                  what="bytes uploaded", setting="CONVEYOR_UPLOAD_BYTES_PER_HOUR"),
    }


def check_job_rate(user_id: str) -> None:
    """Count one job creation (429 over ``CONVEYOR_JOB_RATE_LIMIT``)."""
    current_app.extensions[EXTENSION]["jobs"].check(user_id)


def count_upload_bytes(user_id: str, size: int) -> None:
    """Count ``size`` uploaded bytes after the fact (a chunked upload), without refusing this one."""
    try:
        current_app.extensions[EXTENSION]["upload_bytes"].check(user_id, cost=size)
    except Problem:
        pass


def check_upload_rate(user_id: str, size: int) -> None:
    """Count one upload of ``size`` bytes (429 over the upload count or bytes per hour)."""
    limits = current_app.extensions[EXTENSION]
    limits["uploads"].check(user_id)
    if size > 0:
        limits["upload_bytes"].check(user_id, cost=size)
