"""The errors a stage raises, and how any exception is classified for retries.

A stage raises :class:`TransientError` for what may pass (timeouts, 429, 5xx) and
:class:`PermanentError` for what will not (4xx, bad media). Foreign exceptions (httpx,
openai) are classified by :func:`classify`; anything unknown counts as transient, so it
is retried a bounded number of times. Messages are redacted of every configured secret.
"""

from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass

from dramatiq.middleware import TimeLimitExceeded

from conveyor.config import settings


class StageError(Exception):
    """Raised when a stage fails; the root of the errors a stage raises."""

    code = "stage_error"
    transient = True

    def __init__(self, message: str, *, code: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.retry_after = retry_after


class TransientError(StageError):
    """Raised when a stage failed for a reason that may pass; it is retried with backoff."""

    code = "transient_error"
    transient = True


class RateLimited(TransientError):
    """Raised when a provider answered 429; waits ``retry_after`` seconds without spending a retry."""

    code = "rate_limited"


class PermanentError(StageError):
    """Raised when retrying cannot help (bad input, 4xx); the stage fails at once."""

    code = "permanent_error"
    transient = False


class InvalidMedia(PermanentError):
    """Raised when an input file is empty, corrupt or of a kind the stage cannot read."""

    code = "invalid_media"


class NoSpeech(PermanentError):
    """Raised when a recording holds no speech to transcribe (silence, noise, a clip too short)."""

    code = "no_speech"


class InvalidModelOutput(PermanentError):
    """Raised when a language model's answer is not the JSON asked for, even when asked again."""

    code = "invalid_model_output"


class MediaTooLarge(PermanentError):
    """Raised when media is over a cap: duration, video frame size or image pixels (see :mod:`actors.media.caps`)."""

    code = "media_too_large"


class InvalidInput(PermanentError):
    """Raised when a stage's input is malformed."""

    code = "invalid_input"


class PollLater(Exception):  # noqa: N818 - control flow, named for what it does
    """Raised by :meth:`StageContext.poll_later`: run this stage again after ``delay`` seconds.

    It spends no retry and holds no worker thread while waiting.
    """

    def __init__(self, delay: float) -> None:
        super().__init__(f"poll again in {delay:.1f}s")
        self.delay = delay


class JobCanceled(Exception):  # noqa: N818 - control flow
    """Raised inside a stage when its job was canceled, to stop work early."""


@dataclass(frozen=True)
class ErrorInfo:
    """What the engine needs to know of a failure."""

    code: str
    message: str
    transient: bool
    retry_after: float | None = None  #: seconds, from a provider's Retry-After
    rate_limited: bool = False

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


def redact(text: str) -> str:
    """Replace every configured secret value in ``text`` with ``***``."""
    for secret in settings().secret_values():
        text = text.replace(secret, "***")
    return text


def parse_retry_after(value: str | None) -> float | None:
    """Parse a ``Retry-After`` header: seconds or an HTTP date. Returns seconds, or None."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _http_status_info(status: int, retry_after: float | None, detail: str) -> ErrorInfo:
    if status == 429:
        return ErrorInfo("rate_limited", f"provider rate limit (429): {detail}", True, retry_after, True)
    if status >= 500 or status == 408:
        return ErrorInfo("provider_unavailable", f"provider error {status}: {detail}", True, retry_after)
    if status in (401, 403):
        return ErrorInfo("provider_auth", f"provider refused the credentials ({status})", False)
    return ErrorInfo("provider_rejected", f"provider rejected the request ({status}): {detail}", False)


def classify(exc: BaseException) -> ErrorInfo:
    """Turn any exception raised by a stage into an :class:`ErrorInfo` (redacted)."""
    if isinstance(exc, StageError):
        return ErrorInfo(
            exc.code, redact(exc.message), exc.transient, exc.retry_after, isinstance(exc, RateLimited)
        )
    name = type(exc).__name__
    if isinstance(exc, TimeLimitExceeded):
        return ErrorInfo("timeout", "the stage ran past its time limit", True)
    try:
        import httpx
    except ImportError:  # pragma: no cover
        httpx = None  # type: ignore[assignment]
    if httpx is not None:
        if isinstance(exc, httpx.HTTPStatusError):
            response = exc.response
            detail = redact(response.text)[:200] if response.text else response.reason_phrase
            return _http_status_info(
                response.status_code, parse_retry_after(response.headers.get("retry-after")), detail
            )
        if isinstance(exc, httpx.TimeoutException):
            return ErrorInfo("provider_timeout", "the provider did not answer in time", True)
        if isinstance(exc, httpx.TransportError):
            return ErrorInfo("provider_unreachable", f"could not reach the provider ({name})", True)
    try:
        import openai
    except ImportError:  # pragma: no cover
        openai = None  # type: ignore[assignment]
    if openai is not None:
        if isinstance(exc, openai.APIStatusError):
            retry_after = parse_retry_after(exc.response.headers.get("retry-after"))
            return _http_status_info(exc.status_code, retry_after, redact(str(exc.message))[:200])
        if isinstance(exc, openai.APITimeoutError):
            return ErrorInfo("provider_timeout", "the provider did not answer in time", True)
        if isinstance(exc, openai.APIConnectionError):
            return ErrorInfo("provider_unreachable", "could not reach the provider", True)
    # Only the first line: driver errors go on with SQL text and parameters, which do not belong in a job.
    first_line = (str(exc).strip().splitlines() or [""])[0]
    return ErrorInfo("internal_error", redact(f"{name}: {first_line}")[:200], True)
