"""Logging: JSON lines carrying ``job_id`` and ``stage`` in production, plain text in development.

Every record, Conveyor's own and those of Dramatiq, gunicorn and the libraries, goes through one
formatter that redacts configured secret values, so a key that slips into a message never
reaches the log.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from conveyor.config import settings


def _redact_secrets(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    secrets = settings().secret_values()
    if not secrets:
        return event_dict
    for key, value in event_dict.items():
        if isinstance(value, str):
            for secret in secrets:
                value = value.replace(secret, "***")
            event_dict[key] = value
    return event_dict


def use_json_logs() -> bool:
    fmt = settings().log_format
    return fmt == "json" or (fmt == "auto" and settings().env == "production")


def configure_logging(*, level: int = logging.INFO, json: bool | None = None) -> None:
    """Route all logging through structlog's formatter (JSON or console), with secrets redacted."""
    json = use_json_logs() if json is None else json
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    renderer = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, _redact_secrets, renderer],
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def bind_stage(job_id: str, stage: str, item: int | None) -> None:
    """Tag every log record of this thread with the running stage (until :func:`clear_stage`)."""
    structlog.contextvars.bind_contextvars(job_id=job_id, stage=stage, item=item)


def clear_stage() -> None:
    structlog.contextvars.unbind_contextvars("job_id", "stage", "item")

