"""Webhooks: a finished job's JSON POSTed to its webhook_url by an actor, signed Standard Webhooks style."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from actors.stages import webhooks as delivery
from conveyor.config import configure, settings
from pipelines.services.webhooks import record_delivery
from tests.support.jobs import wait_for_job
from tests.support.waiting import unacknowledged, wait_until_settled
from tests.support.web import submit
from tests.support.webhooks import Receiver


def settled_webhook(client, auth, job_id: str, timeout: float = 20.0) -> dict:
    """The job's webhook delivery once it is delivered or has failed for good."""
    deadline = time.monotonic() + timeout
    while True:
        webhook = client.get(f"/api/jobs/{job_id}", headers=auth).get_json()["webhook"]
        if webhook and webhook["status"] in ("delivered", "failed"):
            return webhook
        assert time.monotonic() < deadline, f"the webhook did not settle: {webhook}"
        time.sleep(0.02)


@pytest.fixture
def receiver(db) -> Iterator[Receiver]:
    # Test-only: webhook URLs may name loopback addresses over http.
    before = settings()
    configure(before, fetch_allow_loopback=True)
    receiver = Receiver()
    yield receiver
    receiver.server.shutdown()
    configure(before)


def test_a_finished_job_is_posted_signed_to_its_webhook(client, auth, stub_worker, receiver):
    job = submit(client, auth, input={"items": 2}, webhook_url=receiver.url)
    wait_for_job(job["id"])
    receiver.wait_for(1)

    headers, body = receiver.calls[0]
    secret = client.get("/api/webhooks/secret", headers=auth).get_json()["secret"]
    payload = Webhook(secret).verify(body, headers)
    assert payload["id"] == job["id"]
    assert payload["status"] == "completed" and payload["progress"] == 100.0
    assert payload["result"] == {"double": 2, "negated": -1}
    assert headers["webhook-id"].startswith("msg_")
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 60

    # A signature made with another user's secret does not verify
    with pytest.raises(WebhookVerificationError):
        Webhook(delivery.webhook_secret("someone-else")).verify(body, headers)

    # The job tells how its webhook went
    webhook = settled_webhook(client, auth, job["id"])
    assert webhook["id"] == headers["webhook-id"]
    assert (webhook["status"], webhook["attempts"], webhook["error"]) == ("delivered", 1, None)


def test_a_failed_delivery_is_retried_with_the_same_id(client, auth, stub_worker, stub_broker, receiver,
                                                        monkeypatch):
    monkeypatch.setitem(delivery.deliver_webhook.options, "min_backoff", 50)
    monkeypatch.setitem(delivery.deliver_webhook.options, "max_backoff", 100)
    receiver.answers = [503, 500]
    before = unacknowledged(stub_broker)
    job = submit(client, auth, input={"items": 1}, webhook_url=receiver.url)
    wait_for_job(job["id"])
    receiver.wait_for(3)
    ids = {headers["webhook-id"] for headers, _ in receiver.calls}
    assert len(ids) == 1
    wait_until_settled(stub_broker, before)  # every delivery and retry sent has been dealt with
    assert len(receiver.calls) == 3  # delivered on the third attempt, then no more
    webhook = settled_webhook(client, auth, job["id"])
    assert (webhook["status"], webhook["attempts"]) == ("delivered", 3)


def test_a_delivery_that_keeps_failing_ends_failed_with_the_last_answer(client, auth, stub_worker, receiver,
                                                                       monkeypatch):
    monkeypatch.setitem(delivery.deliver_webhook.options, "min_backoff", 50)
    monkeypatch.setitem(delivery.deliver_webhook.options, "max_backoff", 100)
    monkeypatch.setattr(delivery, "MAX_RETRIES", 1)
    receiver.answers = [503, 502, 200]
    job = submit(client, auth, input={"items": 1}, webhook_url=receiver.url)
    webhook = settled_webhook(client, auth, job["id"])
    assert (webhook["status"], webhook["attempts"], webhook["response"]) == ("failed", 2, 502)
    assert webhook["error"] == "answered 502"
    assert len(receiver.calls) == 2


def test_a_client_error_is_not_retried(client, auth, stub_worker, stub_broker, receiver, monkeypatch):
    monkeypatch.setitem(delivery.deliver_webhook.options, "min_backoff", 50)
    receiver.answers = [404]
    before = unacknowledged(stub_broker)
    job = submit(client, auth, input={"items": 1}, webhook_url=receiver.url)
    wait_for_job(job["id"])
    receiver.wait_for(1)
    wait_until_settled(stub_broker, before)  # a retry, were one sent, would have been dealt with
    assert len(receiver.calls) == 1
    webhook = settled_webhook(client, auth, job["id"])
    assert (webhook["status"], webhook["attempts"], webhook["response"]) == ("failed", 1, 404)
    assert webhook["error"] == "answered 404; not retried"


def test_a_webhook_url_refused_at_delivery_ends_failed_without_a_request(client, auth, stub_worker, receiver,
                                                                         monkeypatch):
    def refuse(url: str) -> None:
        raise delivery.InvalidInput("the host now resolves to a private address")

    monkeypatch.setattr(delivery, "check_url", refuse)
    job = submit(client, auth, input={"items": 1}, webhook_url=receiver.url)
    webhook = settled_webhook(client, auth, job["id"])
    assert (webhook["status"], webhook["attempts"], webhook["response"]) == ("failed", 1, None)
    assert webhook["error"] == "refused: the host now resolves to a private address"
    assert receiver.calls == []


def test_a_late_or_stale_attempt_does_not_overwrite_a_newer_record(client, auth, stub_worker, receiver):
    job = submit(client, auth, input={"items": 1}, webhook_url=receiver.url)
    webhook = settled_webhook(client, auth, job["id"])
    record_delivery(job["id"], webhook["id"], 0, {"status": "retrying", "error": "answered 500"})
    record_delivery(job["id"], "msg_of_an_earlier_attempt", 5, {"status": "failed", "error": "answered 500"})
    assert client.get(f"/api/jobs/{job['id']}", headers=auth).get_json()["webhook"] == webhook


def test_a_receiver_asking_to_wait_sets_the_next_attempts_delay():
    answer = httpx.Response(429, headers={"Retry-After": "7"})
    assert delivery._retry_after_ms(answer) == 7000
    assert delivery._retry_after_ms(httpx.Response(503, headers={"Retry-After": "99999"})) == delivery.MAX_BACKOFF
    assert delivery._retry_after_ms(httpx.Response(503)) is None


def test_jobs_without_a_webhook_send_nothing(client, auth, stub_worker, stub_broker, receiver):
    before = unacknowledged(stub_broker)
    job = submit(client, auth, input={"items": 1})
    wait_for_job(job["id"])
    wait_until_settled(stub_broker, before)  # a delivery, were one sent, would have been dealt with
    assert receiver.calls == []
    assert client.get(f"/api/jobs/{job['id']}", headers=auth).get_json()["webhook"] is None
