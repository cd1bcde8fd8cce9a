"""Fetch a user-supplied URL into storage without letting it reach private networks (SSRF).

A job input may name a file by ``https://`` URL. :func:`check_url` vets such a URL at job submission
and again in the worker: https only, no user info, and every address the host resolves to must be
a public internet address (no loopback, private, link-local such as 169.254.169.254, multicast,
reserved, or an IPv6 form wrapping one of those). :func:`fetch_to_storage` then connects to the
vetted address itself, so a second DNS answer cannot swap it (DNS rebinding), while the Host
header, TLS SNI and certificate check keep the name. Redirects are followed by hand, each hop
vetted again; size and total time are capped. The body must be audio, video or an image by its
content (:func:`actors.media.sniff.sniff`, as uploads): a playlist or a concat list is refused, since
ffmpeg would read the files it names.

``CONVEYOR_FETCH_ALLOW_LOOPBACK=1`` (tests only) also admits loopback addresses, and ``http://``
for them.
"""

from __future__ import annotations

import hashlib
import ipaddress
import mimetypes
import re
import socket
import ssl
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urljoin, urlsplit

import httpx

from actors.context import current_stage
from actors.errors import InvalidInput, InvalidMedia, RateLimited, TransientError, parse_retry_after
from actors.files.keys import is_ref, key_of
from actors.files.storage import get_storage, store_output
from actors.media.sniff import SNIFF_BYTES, sniff
from conveyor.config import settings

#: How many redirects one fetch follows.
MAX_REDIRECTS = 5
#: s; the whole fetch, redirects and body included.
DEFAULT_TIMEOUT = 300.0
#: s; one TCP + TLS connection.
CONNECT_TIMEOUT = 10.0
#: characters
MAX_URL_LENGTH = 2048
_REDIRECT_STATUSES = {301, 302, 303, 307, 308}
_HEADERS = {"User-Agent": "Conveyor-fetch/1", "Accept": "*/*", "Accept-Encoding": "identity"}
_DEFAULT_PORTS = {"https": 443, "http": 80}
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*$"
)
#: A last label like these makes a host an IPv4 literal (decimal, octal or hex forms included).
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
#: Media types that :mod:`mimetypes` does not map to an extension on every system.
_EXTENSIONS = {
    "audio/wav": ".wav",
    "audio/wave": ".wav",
    "audio/webm": ".webm",
    "audio/x-m4a": ".m4a",
    "audio/ogg": ".ogg",
}

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class VettedURL:
    """A URL that passed :func:`check_url`, with the addresses a fetch may connect to."""

    url: str
    scheme: str
    host: str  #: ASCII (IDNA) host name or IP literal, without brackets
    port: int
    addresses: tuple[str, ...]


def _invalid(message: str) -> InvalidInput:
    return InvalidInput(message, code="invalid_url")


def _refused(message: str) -> InvalidInput:
    return InvalidInput(message, code="url_refused")


def display(url: str) -> str:
    """``url`` without user info, query or fragment, for messages and logs (signed URLs carry tokens)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<malformed URL>"
    return f"{parts.scheme}://{host}{port}{parts.path}"[:200]


def address_refusal(address: Address, *, allow_loopback: bool = False) -> str | None:
    """Why ``address`` may not be fetched from (e.g. ``"private"``), or None for a public address."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return address_refusal(embedded, allow_loopback=allow_loopback)
        if address.teredo is not None:
            return "Teredo tunnel"
        if address.scope_id:
            return "scoped"
    if address.is_loopback:
        return None if allow_loopback else "loopback"
    checks = [
        ("unspecified", address.is_unspecified),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
        ("site-local", isinstance(address, ipaddress.IPv6Address) and address.is_site_local),
        ("non-public", not address.is_global),
    ]
    return next((label for label, hit in checks if hit), None)


def _literal_address(host: str) -> Address | None:
    """The IP address ``host`` spells, None for a name; odd IPv4 spellings (``127.1``, hex) are refused."""
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            raise _invalid(f"{host!r} is not a valid IPv6 address") from None
    labels = host.rstrip(".").split(".")
    if _NUMERIC_LABEL.match(labels[-1]):
        try:
            return ipaddress.IPv4Address(host.rstrip("."))
        except ValueError:
            # 2130706433, 0x7f000001, 127.1, 0177.0.0.1: resolvers read these as IPv4 addresses.
            raise _invalid(f"{host!r} is an unusual way to write an IP address; use a host name") from None
    return None


def _resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise _invalid(f"cannot resolve the host {host!r} ({exc})") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise _invalid(f"the host {host!r} has no address")
    return addresses


def check_url(url: str) -> VettedURL:
    """Vet a URL to fetch from; returns it with the addresses that may be connected to.

    Raises:
      InvalidInput: code ``invalid_url`` for a malformed or unsupported URL, ``url_refused`` when
        the host is (or resolves to) an address that is not on the public internet.
    """
    allow_loopback = settings().fetch_allow_loopback
    if not isinstance(url, str) or not url:
        raise _invalid("the URL must be a non-empty string")
    if len(url) > MAX_URL_LENGTH:
        raise _invalid(f"the URL is longer than {MAX_URL_LENGTH} characters")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 or c == "\\" for c in url):
        raise _invalid("the URL contains spaces, control characters or backslashes")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise _invalid(f"malformed URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme != "https" and not (scheme == "http" and allow_loopback):
        raise _invalid(f"only https:// URLs can be fetched, not {scheme or 'a relative URL'!r}")
    if "@" in parts.netloc:
        raise _invalid("URLs with a user name or password are refused")
    host = (parts.hostname or "").lower()
    if not host:
        raise _invalid("the URL has no host")
    port = port or _DEFAULT_PORTS[scheme]

    literal = _literal_address(host)
    if literal is not None:
        if literal.version == 6 and literal.scope_id:
            raise _refused(f"the address {host} is scoped to a local interface")
        addresses = [str(literal)]
    else:
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise _invalid(f"{host!r} is not a valid host name") from None
        if not _HOSTNAME.match(host.rstrip(".")):
            raise _invalid(f"{host!r} is not a valid host name")
        addresses = _resolve(host, port)

    for address in addresses:
        reason = address_refusal(ipaddress.ip_address(address), allow_loopback=allow_loopback)
        if reason is not None:
            if literal is not None:
                raise _refused(f"{host} is a {reason} address; only public internet addresses can be fetched")
            # What the name resolved to is not told: the answer would be a DNS oracle into private networks.
            raise _refused(f"{host} is not a public address; only public internet addresses can be fetched")
    if scheme == "http" and not all(ipaddress.ip_address(a).is_loopback for a in addresses):
        raise _invalid("only https:// URLs can be fetched (http:// is for loopback test servers)")
    return VettedURL(url=url, scheme=scheme, host=host, port=port, addresses=tuple(addresses))


class PinnedTransport(httpx.BaseTransport):
    """Sends requests for one vetted origin to its vetted addresses, never resolving the name again.

    The URL keeps the name, so the Host header is the name; the TLS handshake sends the name as SNI
    and checks the certificate against it.
    """

    def __init__(self, vetted: VettedURL, *, verify: ssl.SSLContext | bool = True) -> None:
        self.vetted = vetted
        self._inner = httpx.HTTPTransport(verify=verify, retries=0)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        origin = (url.scheme, url.raw_host.decode("ascii").lower(), url.port or _DEFAULT_PORTS[url.scheme])
        if origin != (self.vetted.scheme, self.vetted.host, self.vetted.port):
            raise _refused(f"{display(str(url))} was not vetted for this connection")
        failure: httpx.TransportError | None = None
        for address in self.vetted.addresses:
            pinned = httpx.Request(
                request.method,
                url.copy_with(host=address),
                headers=request.headers,
                stream=request.stream,
                extensions={**request.extensions, "sni_hostname": self.vetted.host},
            )
            try:
                return self._inner.handle_request(pinned)
            except httpx.ConnectError as exc:  # try the next vetted address
                failure = exc
        assert failure is not None
        raise failure

    def close(self) -> None:
        self._inner.close()


def _timeout(deadline: float) -> httpx.Timeout:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TransientError("fetching the URL took too long", code="url_timeout")
    return httpx.Timeout(remaining, connect=min(CONNECT_TIMEOUT, remaining))


def _check_status(response: httpx.Response, shown: str) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        raise RateLimited(f"{shown} answered 429 Too Many Requests", retry_after=retry_after)
    if status >= 500 or status == 408:
        raise TransientError(f"{shown} answered {status} {response.reason_phrase}", code="url_unavailable")
    raise InvalidInput(f"{shown} answered {status} {response.reason_phrase}", code="url_unavailable")


def _file_name(url: str, content_type: str | None) -> str:
    name = PurePosixPath(unquote(urlsplit(url).path)).name or "download"
    if not PurePosixPath(name).suffix and content_type:
        media_type = content_type.split(";")[0].strip().lower()
        name += _EXTENSIONS.get(media_type) or mimetypes.guess_extension(media_type) or ""
    return name


def _store_body(response: httpx.Response, *, url: str, job_id: str, max_bytes: int, deadline: float) -> str:
    shown = display(url)
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise InvalidInput(
            f"{shown} is {int(declared)} bytes, over the {max_bytes}-byte limit", code="file_too_large"
        )
    content_type = response.headers.get("content-type")
    with tempfile.TemporaryDirectory(prefix="conveyor-fetch-") as tmp:
        path = Path(tmp) / "body"
        total = 0
        with path.open("wb") as out:
            for chunk in response.iter_bytes():  # as it arrives, so the deadline is checked often
                total += len(chunk)
                if total > max_bytes:
                    raise InvalidInput(f"{shown} is over the {max_bytes}-byte limit", code="file_too_large")
                if time.monotonic() > deadline:
                    raise TransientError(f"fetching {shown} took too long", code="url_timeout")
                out.write(chunk)
        if total == 0:
            raise InvalidMedia(f"{shown} returned an empty file")
        with path.open("rb") as body:
            kind = sniff(body.read(SNIFF_BYTES))
        if kind is None:  # a playlist or concat list would make ffmpeg read what it names
            raise InvalidMedia(f"{shown} is not an audio, video or image file (the kind is read from the content)")
        content_type, extension = kind
        name = PurePosixPath(_file_name(url, content_type)).stem[:100] or "download"
        return store_output(path, job_id=job_id, name=f"{name}.{extension}", content_type=content_type)


def fetch_to_storage(
    url: str,
    *,
    job_id: str | None = None,
    max_bytes: int | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    verify: ssl.SSLContext | bool = True,
) -> str:
    """Download ``url`` into storage under the job's prefix; returns its ``storage:<key>`` reference.

    Parameters:
      job_id: the job the file belongs to (default: the running stage's job).
      max_bytes: size cap (default: ``CONVEYOR_MAX_UPLOAD_BYTES``); the download stops past it.
      timeout: seconds for the whole fetch, redirects included.
      verify: TLS verification: True (system CAs) or an ``ssl.SSLContext`` (a private CA).

    Raises:
      InvalidInput: a refused or malformed URL (``invalid_url``, ``url_refused``), a 4xx answer, too
        many redirects, or a file over ``max_bytes`` (``file_too_large``).
      InvalidMedia: an empty body.
      TransientError: a timeout, an unreachable host or a 5xx answer (``RateLimited`` for 429).
    """
    job_id = job_id or current_stage().job_id
    max_bytes = settings().max_upload_bytes if max_bytes is None else max_bytes
    deadline = time.monotonic() + timeout
    current = url
    for _hop in range(MAX_REDIRECTS + 1):
        vetted = check_url(current)
        outcome = _fetch_hop(vetted, job_id=job_id, max_bytes=max_bytes, deadline=deadline, verify=verify)
        if not isinstance(outcome, _Redirect):
            return outcome
        current = urljoin(current, outcome.location)
    raise _refused(f"{display(url)} redirected more than {MAX_REDIRECTS} times")


@dataclass(frozen=True)
class _Redirect:
    location: str


def _fetch_hop(
    vetted: VettedURL, *, job_id: str, max_bytes: int, deadline: float, verify: ssl.SSLContext | bool
) -> str | _Redirect:
    """One request to a vetted URL: a redirect to follow, or the stored body's reference."""
    shown = display(vetted.url)
    transport = PinnedTransport(vetted, verify=verify)
    # trust_env=False: a proxy from the environment would resolve the name itself.
    with httpx.Client(transport=transport, trust_env=False, follow_redirects=False) as client:
        try:
            request = client.build_request("GET", vetted.url, headers=_HEADERS, timeout=_timeout(deadline))
            response = client.send(request, stream=True)
            try:
                if response.status_code in _REDIRECT_STATUSES:
                    location = response.headers.get("location")
                    if not location:
                        raise _invalid(f"{shown} redirected without a Location")
                    return _Redirect(location)
                _check_status(response, shown)
                return _store_body(
                    response, url=vetted.url, job_id=job_id, max_bytes=max_bytes, deadline=deadline
                )
            finally:
                response.close()
        except httpx.InvalidURL:
            # httpx reads a redirect's Location as it answers (data:, javascript:, malformed ones)
            raise _invalid(f"{shown} redirected to a URL that is malformed or cannot be fetched") from None
        except httpx.TimeoutException:
            raise TransientError(f"fetching {shown} took too long", code="url_timeout") from None
        except httpx.TransportError as exc:
            raise TransientError(
                f"could not reach {shown} ({type(exc).__name__})", code="url_unreachable"
            ) from None


def stored_input(value: str, *, name: str = "input") -> str:
    """A ``storage:`` reference for a stage input given as a reference or as an ``https://`` URL.

    A URL is fetched once per stage: the result is checkpointed, so a redelivered message reuses it.
    """
    if is_ref(value):
        return value
    if not isinstance(value, str) or "://" not in value:
        raise InvalidInput(f"{name} must be an uploaded file or an https:// URL", code="invalid_input")
    ctx = current_stage()
    digest = hashlib.sha256(value.encode()).hexdigest()
    saved = ctx.saved(f"fetched:{name}")
    if (
        isinstance(saved, dict)
        and saved.get("url_sha256") == digest
        and get_storage().exists(key_of(saved["ref"]))
    ):
        return str(saved["ref"])
    reference = fetch_to_storage(value, job_id=ctx.job_id)
    ctx.checkpoint(f"fetched:{name}", {"url_sha256": digest, "ref": reference})
    return reference
