"""Credentials out of URLs before they are logged: signed grants (``?access=``) and refused ``?token=``.

Only the standard library is imported here: gunicorn loads this before its gevent workers patch it.
"""

from __future__ import annotations

import re

#: Query parameters whose values are credentials: a signed grant (``access``) and the bearer-token
#: names the API refuses in URLs (``web.auth.TOKEN_PARAMETERS``).
SECRET_QUERY_PARAMETERS = ("access", "token", "access_token", "api_key", "apikey", "bearer")
_SECRET_QUERY = re.compile(r"(?i)((?:^|[?&;])(?:" + "|".join(SECRET_QUERY_PARAMETERS) + r")=)[^&;#\s\"]*")
REDACTED = "[redacted]"


def redact_url(text: str) -> str:
    """``text`` (a URL, a query string, a request line or a Referer) with credential values replaced."""
    if "=" not in text:
        return text
    return _SECRET_QUERY.sub(r"\1" + REDACTED, text)
