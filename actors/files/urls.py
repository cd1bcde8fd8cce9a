"""Vetting the URLs named in a job input at submission, so a refused address is a 422, not a failed job.

The worker vets every URL again when it fetches it (:func:`actors.files.fetch.fetch_to_storage`): a name
may resolve differently later, and redirects are only known then.
"""

from __future__ import annotations

import re
from typing import Any

from actors.errors import InvalidInput
from actors.files.fetch import check_url

#: A whole input value that is a URL: a scheme, ``://``, and no spaces (free text is not vetted).
URL_VALUE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://\S*$")


def url_errors(data: Any, field: str = "input") -> list[dict[str, str]]:
    """``{"field", "message"}`` for every URL in ``data`` that may not be fetched (none: all are fine)."""
    if isinstance(data, dict):
        return [e for key, value in data.items() for e in url_errors(value, f"{field}.{key}")]
    if isinstance(data, list):
        return [e for index, value in enumerate(data) for e in url_errors(value, f"{field}.{index}")]
    if isinstance(data, str) and URL_VALUE.match(data):
        try:
            check_url(data)
        except InvalidInput as exc:
            return [{"field": field, "message": exc.message}]
    return []


def webhook_url_errors(url: str | None) -> list[dict[str, str]]:
    """The ``webhook_url`` field's error, if it names an address we may not post to (https, public only)."""
    if not url:
        return []
    try:
        check_url(url)
    except InvalidInput as exc:
        return [{"field": "webhook_url", "message": str(exc)}]
    return []
