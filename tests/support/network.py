"""Observers of the network for the security tests: every connect, a listening trap, a stub resolver.

Nothing here sends traffic: a Python audit hook records each ``socket.connect`` of the process
(worker threads included), a listening socket on 127.0.0.1 shows whether anything reached it, and
``socket.getaddrinfo`` is replaced so made-up names resolve to chosen addresses without any DNS
query (IP literals go to the real resolver in numeric-only mode, which sends nothing).
"""

from __future__ import annotations

import ipaddress
import select
import socket
import sys
from collections.abc import Iterator

import pytest

_connects: list[tuple[str, int]] | None = None


def _audit(event: str, args: tuple) -> None:
    if event == "socket.connect" and _connects is not None and isinstance(args[1], tuple):
        _connects.append((str(args[1][0]), int(args[1][1])))


sys.addaudithook(_audit)


@pytest.fixture
def connects() -> Iterator[list[tuple[str, int]]]:
    """Every TCP connection this process opens during the test, as (address, port)."""
    global _connects
    _connects = []
    yield _connects
    _connects = None


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A listening socket on 127.0.0.1 that must never see a connection."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.settimeout(0.2)
    yield sock
    sock.close()


def port_of(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


def assert_no_connection(sock: socket.socket) -> None:
    """The listening socket has no connection waiting (a refused URL never reached it).

    Called once the refusal is over, so no waiting: a connect to loopback is in the listener's
    queue by the time the connecting call returns.
    """
    readable, _, _ = select.select([sock], [], [], 0)
    assert not readable, "a connection reached the trap"


class StubResolver:
    """Answers ``getaddrinfo`` for made-up names; each name's answers are served in turn (the last repeats)."""

    def __init__(self, real) -> None:
        self.real = real
        self.names: dict[str, list[list[str]]] = {}
        self.lookups: list[str] = []

    def add(self, name: str, *answers: list[str]) -> None:
        self.names[name] = list(answers)

    def __call__(self, host, port, family=0, type=0, proto=0, flags=0):
        try:
            ipaddress.ip_address(str(host).split("%")[0])
        except ValueError:
            self.lookups.append(host)
            answers = self.names.get(host)
            if not answers:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known") from None
            addresses = answers.pop(0) if len(answers) > 1 else answers[0]
            return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                    for a in addresses]
        return self.real(host, port, family, type, proto, flags | socket.AI_NUMERICHOST)


@pytest.fixture
def dns(monkeypatch) -> StubResolver:
    """No name reaches a real DNS server during the test; add answers with ``dns.add(name, [addresses])``."""
    resolver = StubResolver(socket.getaddrinfo)
    resolver.add("localhost", ["127.0.0.1", "::1"])
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    return resolver
