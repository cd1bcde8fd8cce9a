"""Provider concurrency caps: in memory beside a StubBroker, and in Redis shared across processes."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import pytest
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker

from actors.errors import RateLimited, classify
from actors.limits import DEFAULT_LIMIT, KEY_PREFIX, limit_for, provider_slot
from conveyor import config
from tests.support.services import LIMITS_REDIS_URL
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def restore_settings():
    previous = config.settings()
    yield
    config.configure(previous)


def use_limits(**limits: int) -> None:
    environ = {"CONVEYOR_BROKER": "stub"} | {f"CONVEYOR_LIMIT_{k.upper()}": str(v) for k, v in limits.items()}
    config.configure(config.load_settings(environ))


@pytest.fixture
def stub_broker() -> StubBroker:
    broker = StubBroker()
    broker.emit_after("process_boot")
    return broker


def hold(stack, provider: str, broker) -> None:
    stack.enter_context(provider_slot(provider, broker=broker))


def test_limits_are_read_from_the_environment():
    settings = config.load_settings({"CONVEYOR_LIMIT_LUMA": "2", "CONVEYOR_LIMIT_OPENAI": "0"})
    assert settings.limits == {"luma": 2, "openai": 0}
    with pytest.raises(config.ConfigError, match="CONVEYOR_LIMIT_LUMA"):
        config.load_settings({"CONVEYOR_LIMIT_LUMA": "two"})


def test_the_cap_refuses_a_call_beyond_the_limit_until_a_slot_is_freed(stub_broker):
    # Given a cap of 2 calls to Luma
    use_limits(luma=2)
    with ExitStack() as first:
        hold(first, "luma", stub_broker)
        with ExitStack() as second:
            hold(second, "luma", stub_broker)
            # When a third call asks for a slot / Then it is told to come back shortly
            with pytest.raises(RateLimited) as caught:
                hold(ExitStack(), "luma", stub_broker)
            assert caught.value.retry_after is not None and 1.0 <= caught.value.retry_after <= 2.0
            info = classify(caught.value)
            assert info.rate_limited and info.transient and "2 concurrent luma" in info.message
        # And once a call finished, the next one gets in
        with provider_slot("luma", broker=stub_broker):
            pass


def test_a_failing_call_gives_its_slot_back(stub_broker):
    use_limits(replicate=1)
    with pytest.raises(ValueError), provider_slot("replicate", broker=stub_broker):
        raise ValueError("provider said no")
    with provider_slot("replicate", broker=stub_broker):
        pass


def test_providers_have_separate_caps_and_a_default(stub_broker):
    use_limits(luma=1)
    assert limit_for("luma") == 1 and limit_for("elevenlabs") == DEFAULT_LIMIT
    with (
        provider_slot("luma", broker=stub_broker),
        provider_slot("did", broker=stub_broker),
        pytest.raises(RateLimited),
        provider_slot("luma", broker=stub_broker),
    ):
        pass


def test_a_cap_of_zero_means_no_cap(stub_broker):
    use_limits(openai=0)
    with ExitStack() as stack:
        for _ in range(50):
            hold(stack, "openai", stub_broker)


def test_the_current_broker_is_used_by_default():
    # The test run's broker is a StubBroker (CONVEYOR_BROKER=stub): slots live in memory.
    use_limits(heygen=1)
    with provider_slot("heygen"), pytest.raises(RateLimited), provider_slot("heygen"):
        pass


def test_threads_never_hold_more_slots_than_the_cap(stub_broker):
    concurrent_calls(stub_broker, provider="luma", limit=3)


def concurrent_calls(broker, *, provider: str, limit: int) -> None:
    """Twelve threads ask at once; exactly ``limit`` get in while the others are turned away."""
    use_limits(**{provider: limit})
    inside, refused, peak = [0], [0], [0]
    lock = threading.Lock()
    start = threading.Barrier(12)
    release = threading.Event()

    def call() -> None:
        start.wait()
        try:
            with provider_slot(provider, broker=broker):
                with lock:
                    inside[0] += 1
                    peak[0] = max(peak[0], inside[0])
                release.wait(5)
                with lock:
                    inside[0] -= 1
        except RateLimited:
            with lock:
                refused[0] += 1

    threads = [threading.Thread(target=call) for _ in range(12)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 5
    while refused[0] < 12 - limit and time.monotonic() < deadline:
        time.sleep(0.01)
    release.set()
    for thread in threads:
        thread.join(5)
    assert (peak[0], refused[0]) == (limit, 12 - limit)


# -- real Redis -----------------------------------------------------------------------------------


@pytest.fixture
def redis_broker():
    client = redis.Redis.from_url(LIMITS_REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError:
        if os.environ.get("CI") == "true":
            pytest.fail("Redis at 127.0.0.1:6379 is required under CI=true")
        pytest.skip("no Redis at 127.0.0.1:6379")
    broker = RedisBroker(client=client)
    yield broker
    for key in client.scan_iter(KEY_PREFIX + "test-*"):
        client.delete(key)
    broker.close()


HOLDER = """
import sys
from dramatiq.brokers.redis import RedisBroker
from actors.limits import provider_slot
from conveyor import config
from tests.support.services import LIMITS_REDIS_URL
config.configure(config.load_settings({"CONVEYOR_BROKER": "stub", "CONVEYOR_LIMIT_%(upper)s": "1"}))
with provider_slot("%(provider)s", broker=RedisBroker(url="%(url)s"), ttl=%(ttl)s):
    print("holding", flush=True)
    sys.stdin.read()
"""


def start_holder(provider: str, *, ttl: float = 600.0) -> subprocess.Popen:
    """Another process that takes ``provider``'s only slot and keeps it until its stdin closes."""
    code = HOLDER % {"provider": provider, "upper": provider.upper(), "url": LIMITS_REDIS_URL, "ttl": ttl}
    env = os.environ | {"CONVEYOR_BROKER": "stub", "PYTHONPATH": str(ROOT)}
    holder = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        cwd=ROOT,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
    return holder


@pytest.mark.redis
def test_redis_slots_are_shared_between_processes(redis_broker):
    # Given another process holding the only slot of a provider
    provider = f"test-{uuid.uuid4().hex[:8]}"
    use_limits(**{provider: 1})
    holder = start_holder(provider)
    try:
        # When this process asks / Then it is turned away
        with pytest.raises(RateLimited), provider_slot(provider, broker=redis_broker):
            pass
    finally:
        holder.communicate("", timeout=10)
    # And once that process finished its call, the slot is free here
    with provider_slot(provider, broker=redis_broker):
        pass


@pytest.mark.redis
def test_redis_threads_never_hold_more_slots_than_the_cap(redis_broker):
    concurrent_calls(redis_broker, provider=f"test-{uuid.uuid4().hex[:8]}", limit=3)


@pytest.mark.redis
def test_a_slot_held_by_a_killed_worker_comes_back_after_the_ttl(redis_broker):
    # Given a process that took the only slot (short TTL) and was killed without giving it back
    provider = f"test-{uuid.uuid4().hex[:8]}"
    use_limits(**{provider: 1})
    # (a TTL long enough that the slot is surely still held when this process first asks, on a busy machine)
    holder = start_holder(provider, ttl=2)
    holder.kill()
    holder.wait(10)
    with pytest.raises(RateLimited), provider_slot(provider, broker=redis_broker, ttl=2):
        pass

    # When the counter is left alone for its TTL / Then the slot is free again
    def slot_is_free() -> bool:
        try:
            with provider_slot(provider, broker=redis_broker, ttl=2):
                return True
        except RateLimited:
            return False

    wait_until(slot_is_free, timeout=10, interval=0.1, what="the killed holder's slot to expire")
