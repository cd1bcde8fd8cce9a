"""Issue 14, break 8: repeats of an accepted Idempotency-Key are free, even concurrent; Retry-After is honest.

20 concurrent POSTs with one key made one job but spent 20 rate-limit slots, and some got 429.
Now the first request counts once its job row is written; the repeats wait for that row and get
its job back, uncounted. Retry-After is the wait after which a retry is admitted, computed the
same way for the in-memory limiter (``conveyor dev``) and for Redis (production).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from tests.support.rate_limit import LIMIT, job_count, limited_app, post
from tests.support.services import SECURITY_REDIS_URL, require_service
from tests.support.web import bearer
from web.ratelimit import seconds_until_admitted

#: Tests that flush the security Redis database run on one xdist worker, one after another.
pytestmark = pytest.mark.xdist_group("security_redis")

BODY = {"pipeline": "demo", "input": {"items": 1}}


def test_concurrent_repeats_of_one_key_use_one_slot_and_never_get_429(db, stub_broker, user):
    app = limited_app()
    alice = {**bearer(user), "Idempotency-Key": "order-42"}

    def one(_: int):
        response = app.test_client().post("/api/jobs", json=BODY, headers=alice)
        return response.status_code, (response.get_json() or {}).get("id")

    with ThreadPoolExecutor(max_workers=10) as pool:
        answers = list(pool.map(one, range(20)))
    assert {status for status, _ in answers} == {202}, answers
    assert len({job_id for _, job_id in answers}) == 1
    assert job_count() == 1
    # One slot was used: LIMIT - 1 more jobs are admitted, then 429
    client = app.test_client()
    statuses = [post(client, bearer(user)).status_code for _ in range(LIMIT)]
    assert statuses == [202] * (LIMIT - 1) + [429]
    # Over the limit, repeats of the accepted key still get their job, concurrently too
    with ThreadPoolExecutor(max_workers=5) as pool:
        assert {status for status, _ in pool.map(one, range(10))} == {202}


def test_a_new_key_over_the_limit_is_refused_and_its_retry_is_not_free(db, stub_broker, user):
    client = limited_app().test_client()
    for _ in range(LIMIT):
        assert post(client, bearer(user)).status_code == 202
    fresh = {**bearer(user), "Idempotency-Key": "k-new"}
    assert client.post("/api/jobs", json=BODY, headers=fresh).status_code == 429
    assert client.post("/api/jobs", json=BODY, headers=fresh).status_code == 429  # refused: not accepted
    assert job_count() == LIMIT


def test_invalid_requests_with_a_key_still_count(db, stub_broker, user):
    client = limited_app().test_client()
    bad = {"pipeline": "demo", "input": {"items": -1}}
    statuses = [client.post("/api/jobs", json=bad, headers={**bearer(user), "Idempotency-Key": f"k{i}"}).status_code
                for i in range(LIMIT + 1)]
    assert statuses == [422] * LIMIT + [429]


@pytest.mark.parametrize(("window", "amount", "wait"), [
    # (previous, its weight's seconds left, current, its time to live: seconds left + the period)
    ((0, 0.0, 3, 70.0), 3, 10.0),          # all used 50 s in: until the window's end
    ((0, 0.0, 6, 70.0), 3, 40.0),          # twice over: then until the old window weighs half
    ((6, 30.0, 1, 90.0), 3, 10.0),         # the previous window's weight must fall from 3 to below 2
    ((10, 50.0, 0, 110.0), 5, 20.0),       # the limiter's own reset time said 2 s here (50 % 6)
    ((2, 20.0, 0, 80.0), 3, 0.0),          # room already
])
def test_retry_after_is_when_the_next_request_is_admitted(window, amount, wait):
    assert seconds_until_admitted(*window, amount=amount, period=60) == pytest.approx(wait)


@pytest.mark.parametrize("storage", ["memory://", "redis"])
def test_waiting_retry_after_is_enough_in_dev_and_production(db, stub_broker, user, storage):
    if storage == "redis":
        require_service(SECURITY_REDIS_URL, "Redis")
        redis.Redis.from_url(SECURITY_REDIS_URL).flushdb()
        storage = SECURITY_REDIS_URL
    from web.app import create_app

    client = create_app({"TESTING": True, "JOB_RATE_LIMIT": "2 per 2 second",
                         "RATELIMIT_STORAGE_URI": storage}).test_client()
    alice = bearer(user)
    for attempt in range(2):
        statuses = []
        response = post(client, alice)
        while response.status_code == 202:
            statuses.append(202)
            response = post(client, alice)
        assert response.status_code == 429
        wait = int(response.headers["Retry-After"])
        assert 1 <= wait <= 4
        time.sleep(wait)
        assert post(client, alice).status_code == 202, (storage, attempt, wait)
