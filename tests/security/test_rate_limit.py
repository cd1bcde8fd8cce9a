"""Case 16: a flood of job creations is cut off with 429 and Retry-After, per user; reads are not limited."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.rate_limit import LIMIT, job_count, limited_app, post
from tests.support.services import SECURITY_REDIS_URL, require_service
from tests.support.web import bearer

#: Tests that flush the security Redis database run on one xdist worker, one after another.
pytestmark = pytest.mark.xdist_group("security_redis")


def assert_limited(response) -> int:
    assert response.status_code == 429
    assert response.mimetype == "application/problem+json"
    wait = int(response.headers["Retry-After"])
    assert 1 <= wait <= 60
    return wait


def test_a_flood_of_job_creations_gets_429_with_retry_after(db, stub_broker, user, other_user):
    client = limited_app().test_client()
    alice = bearer(user)
    statuses = [post(client, alice).status_code for _ in range(30)]
    assert statuses == [202] * LIMIT + [429] * (30 - LIMIT)
    assert_limited(post(client, alice))
    assert job_count() == LIMIT  # refused requests wrote nothing
    # Another user is not held back by Alice's flood, and Alice can still read
    assert post(client, bearer(other_user)).status_code == 202
    for _ in range(50):
        assert client.get("/api/jobs", headers=alice).status_code == 200


def test_a_concurrent_flood_admits_exactly_the_limit(db, stub_broker, user):
    app = limited_app()
    alice = bearer(user)

    def one(_: int) -> int:
        return post(app.test_client(), alice).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(one, range(40)))
    assert statuses.count(202) == LIMIT and statuses.count(429) == 40 - LIMIT
    assert job_count() == LIMIT


def test_the_limit_is_shared_by_web_processes_through_redis(db, stub_broker, user):
    # Two apps stand for two web processes; the counters live in Redis, as with REDIS_URL in production
    require_service(SECURITY_REDIS_URL, "Redis")
    first, second = limited_app(SECURITY_REDIS_URL).test_client(), limited_app(SECURITY_REDIS_URL).test_client()
    alice = bearer(user)
    statuses = [post(first if i % 2 else second, alice).status_code for i in range(LIMIT + 3)]
    assert statuses == [202] * LIMIT + [429] * 3
    assert_limited(post(first, alice))
    assert_limited(post(second, alice))


@pytest.mark.parametrize("body", [{"pipeline": "nope", "input": {}}, {"pipeline": "demo", "input": {"items": -1}}])
def test_refused_job_requests_count_too(db, stub_broker, user, body):
    # A flood of invalid requests is still a flood: it cannot be used to probe without limit
    client = limited_app().test_client()
    alice = bearer(user)
    statuses = [client.post("/api/jobs", json=body, headers=alice).status_code for _ in range(LIMIT + 2)]
    assert statuses == [422] * LIMIT + [429] * 2
