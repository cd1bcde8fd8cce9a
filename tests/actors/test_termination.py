"""A worker process takes two SIGTERMs at once (Heroku, systemd) as one request to stop gracefully."""

from __future__ import annotations

import signal

from dramatiq.brokers.stub import StubBroker

from actors.broker import termination
from actors.broker.termination import DUPLICATE_WINDOW, DuplicateSigtermGuard, tolerate_duplicate_sigterm


def test_a_sigterm_repeated_at_once_is_ignored_and_a_later_one_still_reaches_the_handler(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(termination.time, "monotonic", lambda: clock[0])
    received: list[int] = []
    handler = tolerate_duplicate_sigterm(lambda signum, frame: received.append(signum))
    handler(signal.SIGTERM, None)
    clock[0] += 0.01
    handler(signal.SIGTERM, None)  # the same request, forwarded by Dramatiq's main process
    assert received == [signal.SIGTERM]
    clock[0] += DUPLICATE_WINDOW
    handler(signal.SIGTERM, None)  # a deliberate second request: "kill now"
    assert received == [signal.SIGTERM, signal.SIGTERM]


def test_the_guard_wraps_only_the_handler_of_a_dramatiq_worker_process():
    previous = signal.getsignal(signal.SIGTERM)
    try:
        def not_dramatiqs(signum, frame):
            pass

        signal.signal(signal.SIGTERM, not_dramatiqs)
        DuplicateSigtermGuard().after_process_boot(StubBroker(middleware=[]))
        assert signal.getsignal(signal.SIGTERM) is not_dramatiqs

        def termhandler(signum, frame):
            pass

        termhandler.__module__ = "dramatiq.cli"
        signal.signal(signal.SIGTERM, termhandler)
        DuplicateSigtermGuard().after_process_boot(StubBroker(middleware=[]))
        installed = signal.getsignal(signal.SIGTERM)
        assert installed is not termhandler and callable(installed) and installed.__qualname__.startswith("tolerate_duplicate_sigterm")
    finally:
        signal.signal(signal.SIGTERM, previous)
