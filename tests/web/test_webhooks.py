"""Webhooks: a finished job's JSON POSTed to its webhook_url by an actor, signed Standard Webhooks style."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from actors import webhooks as delivery
from conveyor.config import configure, settings
from tests.support import wait_for_job
from tests.web.conftest import submit


class Receiver:
    """A webhook receiver on 127.0.0.1 that answers with the queued statuses (then 200)."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, str], bytes]] = []
        self.answers: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.calls.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(receiver.answers.pop(0) if receiver.answers else 200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.calls) < count:
            assert time.monotonic() < deadline, f"{len(self.calls)} of {count} webhook calls arrived"
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


def test_a_failed_delivery_is_retried_with_the_same_id(client, auth, stub_worker, receiver, monkeypatch):
    monkeypatch.setitem(delivery.deliver_webhook.options, "min_backoff", 50)
    monkeypatch.setitem(delivery.deliver_webhook.options, "max_backoff", 100)
    receiver.answers = [503, 500]
    job = submit(client, auth, input={"items": 1}, webhook_url=receiver.url)
    wait_for_job(job["id"])
    receiver.wait_for(3)
    ids = {headers["webhook-id"] for headers, _ in receiver.calls}
    assert len(ids) == 1
    time.sleep(0.3)
    assert len(receiver.calls) == 3  # delivered on the third attempt, then no more


def test_a_client_error_is_not_retried(client, auth, stub_worker, receiver, monkeypatch):
    monkeypatch.setitem(delivery.deliver_webhook.options, "min_backoff", 50)
    receiver.answers = [404]
    job = submit(client, auth, input={"items": 1}, webhook_url=receiver.url)
    wait_for_job(job["id"])
    receiver.wait_for(1)
    time.sleep(0.5)
    assert len(receiver.calls) == 1


def test_jobs_without_a_webhook_send_nothing(client, auth, stub_worker, receiver):
    wait_for_job(submit(client, auth, input={"items": 1})["id"])
    time.sleep(0.2)
    assert receiver.calls == []
