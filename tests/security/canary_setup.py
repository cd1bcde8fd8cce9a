"""Test-only set-up of the processes of the canary-key test, loaded through ``CONVEYOR_PIPELINES``.

It declares no pipeline. In each process (the worker and the API client) every log record, down
to DEBUG and from every library, goes through the production formatter (JSON, secrets redacted),
and a failed webhook delivery is dead-lettered at once instead of after eight retries, so the
dead-letter queue holds a message derived from the failed job.
"""

from __future__ import annotations

import logging

from actors.stages import webhooks
from conveyor.logs import configure_logging

configure_logging(level=logging.DEBUG, json=True)
webhooks.MAX_RETRIES = 0
