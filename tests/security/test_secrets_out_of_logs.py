"""Issue 14, break 7: grant and refused token values stay out of access logs; SECRET_KEY is never a known string.

Grant and link URLs (``?access=…``) and a refused ``?token=`` used to be written whole to gunicorn's
and the dev server's access logs. Production refuses a SECRET_KEY shorter than 32 bytes; development
makes a random key once and keeps it in ``var/secret_key``, instead of the fixed ``dev-secret-key``.
"""

from __future__ import annotations

import logging
import os
import runpy
import socket
import stat
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from gunicorn.config import Config
from werkzeug.serving import make_server
from werkzeug.wrappers import Response

from conveyor.config import load_settings
from conveyor.errors import ConfigError
from conveyor.redact import redact_url
from web.accesslog import RedactingLogger
from web.devserver import RedactingRequestHandler

GRANT = "eyJ1IjoiYWxpY2UifQ.Zx1.signature-part"
TOKEN = "cvy_live-token-value"
PATH = f"/api/files/f1?access={GRANT}&download=1&token={TOKEN}"


@pytest.mark.parametrize(("text", "shown"), [
    (f"GET {PATH} HTTP/1.1", "GET /api/files/f1?access=[redacted]&download=1&token=[redacted] HTTP/1.1"),
    (f"access={GRANT}&x=1", "access=[redacted]&x=1"),
    (f"https://example.com/a?API_KEY={TOKEN}", "https://example.com/a?API_KEY=[redacted]"),
    ("GET /api/jobs?limit=2&noaccess=1 HTTP/1.1", "GET /api/jobs?limit=2&noaccess=1 HTTP/1.1"),
])
def test_credential_query_values_are_redacted(text, shown):
    assert redact_url(text) == shown


def test_gunicorn_uses_the_redacting_logger_for_its_access_log(tmp_path):
    conf = runpy.run_path(str(Path(__file__).resolve().parents[2] / "web" / "gunicorn.conf.py"))
    assert conf["logger_class"] == "web.accesslog.RedactingLogger"
    config = Config()
    config.set("logger_class", conf["logger_class"])
    assert config.logger_class is RedactingLogger
    log = tmp_path / "access.log"
    config.set("accesslog", str(log))
    logger = config.logger_class(config)
    environ = {"REQUEST_METHOD": "GET", "RAW_URI": PATH, "PATH_INFO": "/api/files/f1",
               "QUERY_STRING": PATH.split("?", 1)[1], "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1",
               "HTTP_REFERER": f"https://example.com/player?access={GRANT}"}
    response = SimpleNamespace(status="200 OK", sent=10, headers=[])
    request = SimpleNamespace(headers=[("REFERER", f"https://example.com/player?access={GRANT}")])
    logger.access(response, request, environ, timedelta(seconds=0))
    for handler in logger.access_log.handlers:
        handler.flush()
    written = log.read_text()
    assert "/api/files/f1?access=[redacted]" in written
    assert GRANT not in written and TOKEN not in written


def test_the_dev_server_access_log_hides_grants_and_tokens(caplog):
    app = Response("ok")
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=RedactingRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with caplog.at_level(logging.INFO, logger="werkzeug"):
            assert httpx.get(f"http://127.0.0.1:{server.server_port}{PATH}", timeout=5).status_code == 200
    finally:
        server.shutdown()
    lines = [r.getMessage() for r in caplog.records if r.name == "werkzeug"]
    assert any("/api/files/f1?access=[redacted]" in line for line in lines), lines
    assert not any(GRANT in line or TOKEN in line for line in lines)


def test_production_refuses_a_short_secret_key():
    base = {"CONVEYOR_ENV": "production", "DATABASE_URL": "postgresql://db/x", "REDIS_URL": "redis://r:6379/0",
            "STORAGE_URL": "s3://bucket/prefix"}
    with pytest.raises(ConfigError, match="SECRET_KEY must be at least 32 bytes"):
        load_settings({**base, "SECRET_KEY": "change-me"})
    assert load_settings({**base, "SECRET_KEY": "k" * 32}).secret_key == "k" * 32


def test_development_makes_a_random_key_once_and_keeps_it_under_var(tmp_path):
    first = load_settings({"CONVEYOR_VAR_DIR": str(tmp_path / "a")}).signing_key
    assert first != "dev-secret-key" and len(first) >= 32
    key_file = tmp_path / "a" / "secret_key"
    assert key_file.read_text().strip() == first
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert load_settings({"CONVEYOR_VAR_DIR": str(tmp_path / "a")}).signing_key == first
    assert load_settings({"CONVEYOR_VAR_DIR": str(tmp_path / "b")}).signing_key != first


def test_a_real_gunicorn_writes_redacted_access_lines(tmp_path):
    """gunicorn itself, with ``web/gunicorn.conf.py`` (gevent worker), on a loopback port."""
    (tmp_path / "okapp.py").write_text(
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [b'ok']\n")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = tmp_path / "access.log"
    conf = Path(__file__).resolve().parents[2] / "web" / "gunicorn.conf.py"
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--config", str(conf), "--bind", f"127.0.0.1:{port}", "--workers", "1",
         "--access-logfile", str(log), "--pythonpath", str(tmp_path), "okapp:app"],
        env={**os.environ, "WEB_CONCURRENCY": "1"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}{PATH}", headers={"Referer": f"http://x/?access={GRANT}"},
                                     timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert response.status_code == 200
        while not log.read_text().strip() and time.monotonic() < deadline:  # written after the answer
            time.sleep(0.1)
    finally:
        server.terminate()
        server.wait(timeout=30)
    written = log.read_text()
    assert "/api/files/f1?access=[redacted]&download=1&token=[redacted]" in written, written
    assert GRANT not in written and TOKEN not in written
