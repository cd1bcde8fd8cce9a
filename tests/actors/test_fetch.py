# ruff: noqa: F811 - fixtures imported from tests.support.network are used as test parameters
"""Fetching URL inputs: only public addresses, pinned connections, capped size and time.

No test sends traffic beyond 127.0.0.1. Names are resolved by a stub resolver installed on
``socket.getaddrinfo`` (IP literals go to the real resolver in numeric-only mode), and a Python audit
hook records every ``socket.connect`` of the process, so "refused before any connection" is observed,
not assumed.
"""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from flask import Blueprint, Response, redirect, request
from werkzeug.serving import make_server

from actors.context import StageContext, stage_context
from actors.errors import InvalidInput, InvalidMedia, RateLimited, TransientError
from actors.files import fetch
from actors.files.fetch import check_url, fetch_to_storage, stored_input
from actors.files.keys import key_of
from actors.files.storage import get_storage
from conveyor import config
from tests.emulator import Emulator, start_emulator
from tests.support.network import StubResolver, assert_no_connection, connects, listener  # noqa: F401

CLIP = b"ID3\x04\x00\x00\x00\x00\x00\x00" + bytes(range(256)) * 400  # an MP3 by its first bytes; 102,410 bytes


def bytes_on_disk(key: str) -> bytes:
    """The stored file's bytes, read where the tests' local storage keeps it."""
    path = get_storage().local_path(key)
    assert path is not None, "the tests' storage is local, so every key has a path on disk"
    return path.read_bytes()


# -- observing the network: the same audit hook, trap and stub resolver as the security suite ----------

@pytest.fixture
def dns(monkeypatch) -> StubResolver:
    resolver = StubResolver(socket.getaddrinfo)
    monkeypatch.setattr(fetch.socket, "getaddrinfo", resolver)
    return resolver


def use_settings(tmp_path: Path, *, allow_loopback: bool) -> config.Settings:
    return config.configure(
        config.load_settings(
            {
                "CONVEYOR_BROKER": "stub",
                "CONVEYOR_VAR_DIR": str(tmp_path),
                "STORAGE_URL": f"file://{tmp_path / 'files'}",
                "CONVEYOR_FETCH_ALLOW_LOOPBACK": "1" if allow_loopback else "",
            }
        )
    )


@pytest.fixture(autouse=True)
def restore_settings():
    previous = config.settings()
    yield
    config.configure(previous)


@pytest.fixture
def strict(tmp_path) -> config.Settings:
    """Production rules: https only, public addresses only."""
    return use_settings(tmp_path, allow_loopback=False)


@pytest.fixture
def loopback_allowed(tmp_path) -> config.Settings:
    """The test-only override: loopback servers (http or https) may be fetched from."""
    return use_settings(tmp_path, allow_loopback=True)


def refused(url: str, code: str) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        fetch_to_storage(url, job_id="j", timeout=5)
    assert caught.value.code == code, caught.value.message
    return caught.value


# -- a file server on loopback ------------------------------------------------------------------


def file_routes() -> Blueprint:
    bp = Blueprint("files", __name__)

    @bp.get("/media/clip.mp3")
    def clip():
        return Response(CLIP, mimetype="audio/mpeg")

    @bp.get("/media/noext")
    def noext():
        return Response(b"RIFF....WAVE", mimetype="audio/wav")

    @bp.get("/to")
    def to():
        return redirect(request.args["url"], code=int(request.args.get("code", 302)))

    @bp.get("/hops/<int:n>")
    def hops(n: int):
        return redirect("/media/clip.mp3" if n == 0 else f"/hops/{n - 1}", code=307)

    @bp.get("/endless")
    def endless():
        def body():
            chunk = b"x" * 65536
            for _ in range(1000):  # 64 MB if nobody stops reading
                yield chunk

        return Response(body(), mimetype="application/octet-stream")

    @bp.get("/trickle")
    def trickle():
        def body():
            for _ in range(40):
                yield b"x"
                time.sleep(0.1)

        return Response(body(), mimetype="application/octet-stream")

    @bp.get("/empty")
    def empty():
        return Response(b"", mimetype="audio/mpeg")

    return bp


@pytest.fixture
def files_server():
    server = start_emulator(file_routes())
    yield server
    server.stop()


def port_of(server) -> int:
    return int(server.base_url.rsplit(":", 1)[1])


# -- the validator --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "gopher://example.com/_x",
        "ftp://example.com/a.mp3",
        "dict://example.com:11211/",
        "data:audio/mpeg;base64,AAAA",
        "javascript:alert(1)",
        "http://example.com/a.mp3",
        "//example.com/a.mp3",
        "example.com/a.mp3",
        "https:///a.mp3",
        "https://exa mple.com/",
        "https://example.com:99999/",
        "",
    ],
)
def test_urls_other_than_https_to_a_host_are_refused_before_any_lookup(strict, dns, connects, url):
    with pytest.raises(InvalidInput) as caught:
        check_url(url)
    assert caught.value.code == "invalid_url"
    assert dns.lookups == [] and connects == []


@pytest.mark.parametrize(
    "url",
    [
        "https://user:secret@example.com/a.mp3",
        "https://example.com@127.0.0.1/a.mp3",
        "https://example.com%40127.0.0.1@evil.example/",
        "https://127.0.0.1\\@example.com/",
        "https://example.com\\@127.0.0.1/",
    ],
)
def test_user_info_tricks_are_refused(strict, dns, connects, url):
    with pytest.raises(InvalidInput) as caught:
        check_url(url)
    assert caught.value.code == "invalid_url"
    assert connects == []


@pytest.mark.parametrize(
    "host", ["0x7f000001", "2130706433", "127.1", "0177.0.0.1", "0x7f.0.0.1", "017700000001"]
)
def test_odd_spellings_of_ip_addresses_are_refused(strict, dns, listener, host):
    # Given a listening socket on 127.0.0.1 / When its address is written in a form resolvers accept
    port = listener.getsockname()[1]
    with pytest.raises(InvalidInput) as caught:
        fetch_to_storage(f"https://{host}:{port}/a.mp3", job_id="j")
    # Then the URL is refused and nothing connected
    assert caught.value.code == "invalid_url" and "unusual" in caught.value.message
    assert_no_connection(listener)


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "127.9.9.9",
        "[::1]",
        "169.254.169.254",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "100.64.0.1",
        "0.0.0.0",
        "[::]",
        "224.0.0.1",
        "239.255.255.250",
        "255.255.255.255",
        "240.0.0.1",
        "198.18.0.1",
        "192.0.2.10",
        "[::ffff:127.0.0.1]",
        "[::ffff:169.254.169.254]",
        "[::ffff:10.0.0.1]",
        "[fe80::1]",
        "[fc00::1]",
        "[fd12:3456::1]",
        "[ff02::1]",
        "[2002:7f00:1::1]",
        "[64:ff9b::a9fe:a9fe]",
        "[2001:0:4136:e378:8000:63bf:3fff:fdd2]",
        "[::127.0.0.1]",
    ],
)
def test_ip_literals_off_the_public_internet_are_refused_before_any_connection(strict, connects, host):
    error = refused(f"https://{host}/latest/meta-data/", "url_refused")
    assert "public internet" in error.message
    assert connects == []


@pytest.mark.parametrize(
    "answers",
    [
        ["127.0.0.1"],
        ["10.1.2.3"],
        ["169.254.169.254"],
        ["::1"],
        ["::ffff:127.0.0.1"],
        ["93.184.215.14", "192.168.0.7"],
    ],
)
def test_names_resolving_to_private_addresses_are_refused_before_any_connection(
    strict, dns, connects, answers
):
    # Given a public-looking name that resolves (also) to a non-public address
    dns.add("cdn.example.com", answers)
    # When it is fetched / Then it is refused without saying what the name resolved to (no DNS
    # oracle), and no socket connected
    error = refused("https://cdn.example.com/a.mp3", "url_refused")
    assert "cdn.example.com is not a public address" in error.message
    assert not any(answer in error.message for answer in answers)
    assert dns.lookups == ["cdn.example.com"] and connects == []


def test_a_name_resolving_to_a_listening_loopback_port_gets_no_connection(strict, dns, listener):
    dns.add("media.example.com", ["127.0.0.1"])
    port = listener.getsockname()[1]
    refused(f"https://media.example.com:{port}/a.mp3", "url_refused")
    assert_no_connection(listener)


def test_public_addresses_pass_the_validator_without_connecting(strict, dns, connects):
    dns.add("cdn.example.com", ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"])
    vetted = check_url("https://CDN.example.com/media/a.mp3?sig=abc")
    assert vetted.host == "cdn.example.com" and vetted.port == 443
    assert vetted.addresses == ("93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c")
    assert check_url("https://[2606:4700:4700::1111]:8443/x").addresses == ("2606:4700:4700::1111",)
    assert check_url("https://[::ffff:8.8.8.8]/x").addresses == ("::ffff:808:808",)
    assert connects == []


def test_an_unknown_host_is_an_invalid_url(strict, dns):
    with pytest.raises(InvalidInput) as caught:
        check_url("https://no-such-host.example.com/a.mp3")
    assert caught.value.code == "invalid_url" and "cannot resolve" in caught.value.message


def test_loopback_stays_refused_without_the_test_override(strict, listener):
    port = listener.getsockname()[1]
    assert refused(f"http://127.0.0.1:{port}/a.mp3", "invalid_url")
    assert refused(f"https://127.0.0.1:{port}/a.mp3", "url_refused")
    assert refused(f"https://localhost:{port}/a.mp3", "url_refused")
    assert_no_connection(listener)


def test_the_override_admits_loopback_but_no_other_private_address_nor_plain_http_elsewhere(
    loopback_allowed, dns, connects
):
    assert check_url("http://127.0.0.1:8/x").addresses == ("127.0.0.1",)
    refused("https://10.0.0.1/x", "url_refused")
    refused("http://169.254.169.254/latest/meta-data/", "url_refused")
    dns.add("cdn.example.com", ["93.184.215.14"])
    refused("http://cdn.example.com/x", "invalid_url")
    assert connects == []


# -- fetching -------------------------------------------------------------------------------------


def test_a_file_is_fetched_into_storage_under_the_job(loopback_allowed, files_server):
    reference = fetch_to_storage(files_server.url("/media/clip.mp3"), job_id="job-42")
    key = key_of(reference)
    assert key.startswith("jobs/job-42/") and key.endswith(".mp3")
    assert bytes_on_disk(key) == CLIP
    (call,) = files_server.calls
    assert call.headers["host"] == f"127.0.0.1:{port_of(files_server)}"
    assert call.headers["accept-encoding"] == "identity"


def test_a_file_without_extension_gets_one_from_its_content_type(loopback_allowed, files_server):
    assert key_of(fetch_to_storage(files_server.url("/media/noext"), job_id="j")).endswith(".wav")


def test_redirects_are_followed_up_to_five_hops(loopback_allowed, files_server, connects):
    reference = fetch_to_storage(files_server.url("/hops/4"), job_id="j")
    assert bytes_on_disk(key_of(reference)) == CLIP
    assert len(files_server.calls) == 6
    assert {address for address, _ in connects} == {"127.0.0.1"}
    error = refused(files_server.url("/hops/5"), "url_refused")
    assert "more than 5" in error.message


@pytest.mark.parametrize(
    ("target", "code"),
    [
        ("http://169.254.169.254/latest/meta-data/", "url_refused"),
        ("https://10.0.0.5/admin", "url_refused"),
        ("https://[::ffff:192.168.0.1]/", "url_refused"),
        ("https://internal.example.com/secret", "url_refused"),
        ("file:///etc/passwd", "invalid_url"),
        ("gopher://127.0.0.1:6379/_INFO", "invalid_url"),
        # issue 14: httpx refuses a data: Location as it answers; that is invalid_url, not an internal error
        ("data:audio/mpeg;base64,SUQzBAAAAAAAAA==", "invalid_url"),
        ("data:text/plain,hello", "invalid_url"),
    ],
)
def test_each_redirect_hop_is_vetted_again(loopback_allowed, dns, files_server, connects, target, code):
    # Given a server that redirects to a private address (a name resolving to one, for the stub)
    dns.add("internal.example.com", ["192.168.10.20"])
    # When the first URL is fetched / Then the hop is refused and only the first server was contacted
    refused(files_server.url(f"/to?url={target}"), code)
    assert set(connects) == {("127.0.0.1", port_of(files_server))}
    assert len(files_server.calls) == 1


@pytest.mark.parametrize("target_host", ["127.0.0.1", "[::ffff:127.0.0.1]", "files.example.com"])
def test_a_redirect_to_loopback_is_refused_under_production_rules(
    tmp_path, dns, files_server, listener, target_host
):
    # Given a loopback file server reached under the test override, which switches production rules
    # back on as it answers with a redirect to a listening loopback port (directly or through a name)
    use_settings(tmp_path, allow_loopback=True)
    dns.add("files.example.com", ["127.0.0.1"])
    files_server.app.before_request(lambda: use_settings(tmp_path, allow_loopback=False) and None)
    port = listener.getsockname()[1]
    # When the first URL is fetched / Then the hop is refused and the loopback port saw no connection
    refused(files_server.url(f"/to?url=https://{target_host}:{port}/x"), "url_refused")
    assert len(files_server.calls) == 1
    assert_no_connection(listener)


def test_a_body_over_the_size_cap_is_abandoned_and_nothing_is_stored(
    loopback_allowed, files_server, tmp_path
):
    started = time.monotonic()
    error = refused_with(
        lambda: fetch_to_storage(files_server.url("/endless"), job_id="j", max_bytes=200_000)
    )
    assert error.code == "file_too_large"
    assert time.monotonic() - started < 5
    declared = refused_with(
        lambda: fetch_to_storage(files_server.url("/media/clip.mp3"), job_id="j", max_bytes=1000)
    )
    assert declared.code == "file_too_large" and "102410 bytes" in declared.message
    assert not any(p.is_file() for p in (tmp_path / "files").rglob("*"))


def refused_with(call) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        call()
    return caught.value


def test_a_slow_body_is_cut_at_the_time_limit(loopback_allowed, files_server):
    started = time.monotonic()
    with pytest.raises(TransientError) as caught:
        fetch_to_storage(files_server.url("/trickle"), job_id="j", timeout=0.5)
    assert caught.value.code == "url_timeout"
    assert 0.4 < time.monotonic() - started < 2.0


def test_answers_are_classified_for_retries(loopback_allowed, files_server):
    url = files_server.url("/media/clip.mp3?token=very-secret-token")
    files_server.fail_next("/media", 404)
    assert refused(url, "url_unavailable").message.endswith("answered 404 NOT FOUND")
    files_server.fail_next("/media", 503)
    with pytest.raises(TransientError) as unavailable:
        fetch_to_storage(url, job_id="j")
    assert (
        unavailable.value.code == "url_unavailable" and "very-secret-token" not in unavailable.value.message
    )
    files_server.fail_next("/media", 429, headers={"Retry-After": "7"})
    with pytest.raises(RateLimited) as limited:
        fetch_to_storage(url, job_id="j")
    assert limited.value.retry_after == 7
    with pytest.raises(InvalidMedia):
        fetch_to_storage(files_server.url("/empty"), job_id="j")


def test_an_unreachable_server_is_a_transient_error(loopback_allowed, listener):
    port = listener.getsockname()[1]
    listener.close()
    with pytest.raises(TransientError) as caught:
        fetch_to_storage(f"http://127.0.0.1:{port}/a.mp3", job_id="j")
    assert caught.value.code == "url_unreachable"


def test_a_url_input_is_fetched_once_per_stage_and_a_reference_passes_through(loopback_allowed, files_server):
    ctx = StageContext(job_id="job-7", stage="prepare")
    with stage_context(ctx):
        first = stored_input(files_server.url("/media/clip.mp3"), name="audio")
        again = stored_input(files_server.url("/media/clip.mp3"), name="audio")
        assert stored_input(first) == first
    assert first == again and len(files_server.calls) == 1
    assert ctx.saved("fetched:audio")["ref"] == first


# -- TLS to a pinned address ----------------------------------------------------------------------


def self_signed(tmp_path: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


@pytest.fixture
def tls_server(tmp_path):
    """An HTTPS file server on 127.0.0.1 with a certificate for media.example.test; records SNI names."""
    cert_file, key_file = self_signed(tmp_path, "media.example.test")
    server_names: list[str | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    context.sni_callback = lambda sock, name, ctx: server_names.append(name)
    routes = Emulator(file_routes())  # its Flask app and call records, served here over TLS
    server = make_server("127.0.0.1", 0, routes.app, threaded=True, ssl_context=context)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield server.server_port, cert_file, server_names, routes.calls
    server.shutdown()
    server.server_close()


def test_https_connects_to_the_vetted_address_and_keeps_the_name_for_sni_host_and_certificate(
    loopback_allowed, dns, connects, tls_server, tmp_path
):
    # Given a name whose DNS answer changes after the first lookup (rebinding to a private address)
    port, cert_file, server_names, calls = tls_server
    dns.add("media.example.test", ["127.0.0.1"], ["10.0.0.66"])
    trust = ssl.create_default_context(cafile=str(cert_file))
    # When it is fetched over https
    reference = fetch_to_storage(
        f"https://media.example.test:{port}/media/clip.mp3", job_id="j", verify=trust
    )
    # Then one lookup was made, the connection went to that address, and the name travelled in SNI and Host
    assert bytes_on_disk(key_of(reference)) == CLIP
    assert dns.lookups == ["media.example.test"]
    assert connects == [("127.0.0.1", port)]
    assert server_names == ["media.example.test"]
    assert calls[-1].headers["host"] == f"media.example.test:{port}"


def test_the_certificate_is_checked_against_the_name_not_the_address(loopback_allowed, dns, tls_server):
    port, cert_file, _, _ = tls_server
    dns.add("other.example.test", ["127.0.0.1"])
    trust = ssl.create_default_context(cafile=str(cert_file))
    with pytest.raises(TransientError) as caught:
        fetch_to_storage(f"https://other.example.test:{port}/media/clip.mp3", job_id="j", verify=trust)
    assert caught.value.code == "url_unreachable"
