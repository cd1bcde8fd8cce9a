"""Many event-stream subscribers share one Redis pub/sub connection per process (real, embedded Redis)."""

from __future__ import annotations

import json
import queue
import time

import pytest

from actors.broker.build import embedded_redis_client
from pipelines.engine import notices
from pipelines.services.streams import NoticeHub
from scripts.dev_server import stop_embedded_redis


@pytest.fixture
def redis_client(tmp_path):
    client = embedded_redis_client(tmp_path)
    yield client
    client.connection_pool.disconnect()
    stop_embedded_redis(tmp_path)


def test_hundreds_of_subscribers_share_one_connection_and_each_gets_its_notices(redis_client):
    hub = NoticeHub(redis_client)
    try:
        # Given 300 subscribers on 30 jobs: more than redis-py's pool would hand out one by one
        inboxes = [(f"job-{i % 30}", hub.add(notices.channel(f"job-{i % 30}"))) for i in range(300)]
        assert len(hub.inboxes) == 30
        assert redis_client.pubsub_numsub(notices.channel("job-7"))[0][1] == 1

        # When two jobs get a notice
        redis_client.publish(notices.channel("job-7"), json.dumps({"event": "progress", "job_id": "job-7"}))
        redis_client.publish(notices.channel("job-8"), json.dumps({"event": "status", "job_id": "job-8"}))

        # Then exactly their subscribers receive it
        for job, inbox in inboxes:
            if job in ("job-7", "job-8"):
                assert inbox.get(timeout=5)["job_id"] == job
            with pytest.raises(queue.Empty):
                inbox.get(timeout=0.001)

        # And a job nobody follows any more is unsubscribed
        for job, inbox in inboxes:
            if job == "job-7":
                hub.remove(notices.channel(job), inbox)
        deadline = time.monotonic() + 5
        while redis_client.pubsub_numsub(notices.channel("job-7"))[0][1] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert redis_client.pubsub_numsub(notices.channel("job-7"))[0][1] == 0
        assert "conveyor:job:job-7" not in hub.inboxes
    finally:
        hub.stop()
