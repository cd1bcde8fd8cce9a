"""Webhook delivery: POST a finished job's JSON to its ``webhook_url``, signed Standard Webhooks style.

The message carries the URL, a delivery id, the owner's user id and the job JSON — never a
secret. The signing key is derived here, in the worker, from ``SECRET_KEY`` and the user id,
so web and workers agree on it without storing it. The URL is vetted again before each
attempt (its host could resolve elsewhere since the job was accepted) and the connection goes
to the vetted address; redirects are not followed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from datetime import UTC, datetime
from typing import Any

import dramatiq
import httpx
from standardwebhooks import Webhook

from actors.binding import deferred_actor
from actors.errors import InvalidInput
from actors.files.fetch import PinnedTransport, check_url, display
from conveyor.config import settings

logger = logging.getLogger(__name__)

#: Delivery attempts after the first.
MAX_RETRIES = 8
#: ms; first retry delay, doubled each time (with jitter) up to MAX_BACKOFF.
MIN_BACKOFF = 5_000
MAX_BACKOFF = 30 * 60_000
#: s; one POST, connection included.
REQUEST_TIMEOUT = 10.0
#: The queue webhooks wait in, apart from stage messages.
QUEUE = "webhooks"


class DeliveryFailed(dramatiq.Retry):
    """Raised when a delivery attempt failed in a way that may pass (network, 408, 429, 5xx).

    A ``Retry``: tried again with backoff (or after the receiver's ``Retry-After``), and not
    logged by the worker as an error with a traceback.
    """

    def __init__(self, reason: str, response: int | None = None, delay: int | None = None) -> None:
        super().__init__(reason, delay)
        self.response = response  #: the receiver's HTTP status, if it answered


class DeliveryRejected(Exception):
    """Raised when sending again cannot help: a URL refused when vetted, a 4xx answer or a redirect."""

    def __init__(self, reason: str, response: int | None = None) -> None:
        super().__init__(reason)
        self.response = response


def webhook_secret(user_id: str | None) -> str:
    """The ``whsec_`` secret signing ``user_id``'s webhooks, derived from SECRET_KEY."""
    key = hmac.new(settings().signing_key.encode(), f"conveyor-webhooks:{user_id or ''}".encode(),
                   hashlib.sha256).digest()
    return "whsec_" + base64.b64encode(key).decode()


def signed_headers(secret: str, message_id: str, body: str, now: datetime | None = None) -> dict[str, str]:
    """The Standard Webhooks headers for ``body``."""
    now = now or datetime.now(UTC)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, now, body),
    }


def _should_retry(retries_so_far: int, exception: BaseException) -> bool:
    return isinstance(exception, DeliveryFailed) and retries_so_far < MAX_RETRIES


def _retry_after_ms(response: httpx.Response) -> int | None:
    """The receiver's ``Retry-After`` in seconds, as a delay in ms (capped), or None."""
    value = response.headers.get("retry-after", "")
    return min(int(value) * 1000, MAX_BACKOFF) if value.isdigit() else None


@deferred_actor(queue_name=QUEUE, retry_when=_should_retry, min_backoff=MIN_BACKOFF, max_backoff=MAX_BACKOFF,
                 throws=(DeliveryRejected,), time_limit=int(REQUEST_TIMEOUT * 3 * 1000))
def deliver_webhook(url: str, message_id: str, user_id: str | None, payload: dict[str, Any]) -> None:
    """POST ``payload`` to ``url``.

    Raises:
      DeliveryFailed: to be tried again with backoff.
      DeliveryRejected: the delivery ends failed (the worker logs it at info level).
    """
    shown = display(url)
    try:
        vetted = check_url(url)
    except InvalidInput as exc:
        logger.warning("Webhook %s to %s refused: %s", message_id, shown, exc)
        raise DeliveryRejected(f"refused: {exc}") from None
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True)
    headers = {"content-type": "application/json", "user-agent": "Conveyor-webhooks/1",
               **signed_headers(webhook_secret(user_id), message_id, body)}
    try:
        with httpx.Client(transport=PinnedTransport(vetted), timeout=REQUEST_TIMEOUT,
                          follow_redirects=False) as client:
            response = client.post(url, content=body.encode(), headers=headers)
    except httpx.HTTPError as exc:
        logger.info("Webhook %s to %s: %s", message_id, shown, type(exc).__name__)
        raise DeliveryFailed(f"no answer ({type(exc).__name__})") from None
    status = response.status_code
    if 200 <= status < 300:
        logger.info("Webhook %s delivered to %s (%s)", message_id, shown, status)
        return
    if status in (408, 429) or status >= 500:
        logger.info("Webhook %s to %s answered %s", message_id, shown, status)
        raise DeliveryFailed(f"answered {status}", status, _retry_after_ms(response))
    # Other answers (4xx, redirects) will not change by sending again.
    logger.warning("Webhook %s to %s answered %s; not retried", message_id, shown, status)
    raise DeliveryRejected(f"answered {status}; not retried", status)
