"""gunicorn's access log without credentials: grant and token query values are replaced (see conveyor.redact).

Named by ``logger_class`` in ``gunicorn.conf.py``; it imports nothing but gunicorn and the standard
library, since gunicorn loads it before the gevent workers patch the standard library.
"""

from __future__ import annotations

from typing import Any

from gunicorn.glogging import Logger

from conveyor.redact import redact_url


class RedactingLogger(Logger):
    """Every access-log atom (request line, query, path, Referer, headers) redacted of credentials."""

    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> dict[str, Any]:
        atoms = super().atoms(resp, req, environ, request_time)
        return {key: redact_url(value) if isinstance(value, str) else value for key, value in atoms.items()}
