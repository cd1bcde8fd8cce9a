"""The CLI and the client as a newcomer meets them: values that are text or files, id prefixes, one-line
errors without tracebacks, ``users create`` in a fresh folder, sign-in links that keep working."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from conveyor.client import APIError, Client
from scripts.dev_server import free_port, isolated_env
from web.cli import main

ROOT = Path(__file__).resolve().parents[2]
CONVEYOR = str(Path(sys.executable).with_name("conveyor"))
SCRIPT = ("A lighthouse keeper finds a message in a bottle on the rocks below the tower. " * 4).strip()


def _point_cli_at(url: str, token: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("CONVEYOR_URL", url)
    monkeypatch.setenv("CONVEYOR_TOKEN", token)
    return url


@pytest.fixture
def cli_env(base_url, user, monkeypatch):
    return _point_cli_at(base_url, user.token, monkeypatch)


@pytest.fixture
def queued_cli_env(served_url, user, monkeypatch):
    """The CLI's environment for a server whose jobs are only queued (what they do is not under test)."""
    return _point_cli_at(served_url, user.token, monkeypatch)


def _started_id(output: str) -> str:
    return output.strip().splitlines()[-1]


def _one_line_error(result) -> str:
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # handled, not an uncaught error
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


def test_a_long_text_value_is_text_and_at_path_reads_a_text_field(queued_cli_env, user, tmp_path):
    runner = CliRunner()
    assert len(SCRIPT) > 300
    long = runner.invoke(main, ["submit", "video_generation", f"script={SCRIPT}", "max_scenes=1"])
    assert long.exit_code == 0, long.output
    huge = runner.invoke(main, ["submit", "video_generation", "script=" + "word " * 900, "max_scenes=1"])
    assert huge.exit_code == 0, huge.output  # never "File name too long"
    story = tmp_path / "story.txt"
    story.write_text(SCRIPT + "\n\nThe second scene.\n")
    from_file = runner.invoke(main, ["submit", "video_generation", f"script=@{story}", "max_scenes=1"])
    assert from_file.exit_code == 0, from_file.output
    piped = runner.invoke(main, ["submit", "video_generation", "script=@-", "max_scenes=1"], input=SCRIPT)
    assert piped.exit_code == 0, piped.output
    with Client(queued_cli_env, user.token) as client:
        jobs = {name: client.get(_started_id(r.output)) for name, r in
                [("long", long), ("huge", huge), ("file", from_file), ("stdin", piped)]}
    assert jobs["long"]["input"]["script"] == SCRIPT and jobs["long"]["input"]["max_scenes"] == 1
    assert jobs["huge"]["input"]["script"] == "word " * 900
    assert jobs["file"]["input"]["script"] == story.read_text()
    assert jobs["stdin"]["input"]["script"] == SCRIPT


def test_a_file_field_uploads_a_path_and_at_dash_uploads_stdin(cli_env, user, tmp_path):
    sample = (ROOT / "samples" / "lecture.mp3").read_bytes()
    runner = CliRunner()
    piped = runner.invoke(main, ["submit", "noop_chain", "audio=@-"], input=sample)
    assert piped.exit_code == 0, piped.output
    named = runner.invoke(main, ["submit", "noop_chain", "audio=samples/lecture.mp3"])
    assert named.exit_code == 0, named.output
    missing = runner.invoke(main, ["submit", "noop_chain", f"audio=@{tmp_path / 'nope.mp3'}"])
    assert missing.exit_code != 0 and "no such file" in missing.output
    with Client(cli_env, user.token) as client:
        uploaded = client.wait(_started_id(piped.output), timeout=30)
        # noop_chain declares no fields: a plain value stays text, only @path uploads.
        plain = client.wait(_started_id(named.output), timeout=30)
    assert uploaded["input"]["audio"].startswith("file:")
    assert plain["input"]["audio"] == "samples/lecture.mp3"


def test_a_list_field_takes_comma_separated_values(cli_env, user):
    runner = CliRunner()
    started = runner.invoke(main, ["submit", "lecture_notes", "audio=@samples/lecture.mp3",
                                   "glossary=photosynthesis, biodiversity,food chain"])
    assert started.exit_code == 0, started.output
    with Client(cli_env, user.token) as client:
        job = client.get(_started_id(started.output))
        client.cancel(job["id"])
    assert job["input"]["glossary"] == ["photosynthesis", "biodiversity", "food chain"]


def test_an_id_prefix_of_eight_characters_works_wherever_the_cli_takes_an_id(cli_env, user):
    runner = CliRunner()
    job_id = _started_id(runner.invoke(main, ["submit", "demo", "items=20", "sleep=1"]).output)
    prefix = job_id[:8]
    status = runner.invoke(main, ["status", prefix])
    assert status.exit_code == 0 and status.output.startswith(job_id), status.output
    assert runner.invoke(main, ["cancel", prefix]).output.strip() == f"{job_id} canceled"
    assert runner.invoke(main, ["retry", job_id[:12].upper()]).output.startswith(f"{job_id} processing")
    runner.invoke(main, ["cancel", job_id])
    assert "at least 8 characters" in _one_line_error(runner.invoke(main, ["status", job_id[:7]]))
    assert "none of your jobs" in _one_line_error(runner.invoke(main, ["status", "ffffffff0"]))


def test_an_ambiguous_prefix_lists_the_matching_jobs():
    ids = ["0123abcd-0000-4000-8000-000000000001", "0123abcd-0000-4000-8000-000000000002",
           "99999999-0000-4000-8000-000000000003"]
    pages = {None: {"jobs": [{"id": ids[0]}, {"id": ids[2]}], "next_cursor": "c2"},
             "c2": {"jobs": [{"id": ids[1]}], "next_cursor": None}}

    def answer(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/jobs"
        return httpx.Response(200, json=pages[request.url.params.get("cursor")])

    with Client("http://127.0.0.1:1", "t", transport=httpx.MockTransport(answer)) as client:
        assert client.resolve("99999999") == ids[2]
        assert client.resolve(ids[0]) == ids[0]
        with pytest.raises(APIError) as ambiguous:
            client.resolve("0123abcd-0")
    assert ambiguous.value.status == 409 and ids[0] in str(ambiguous.value) and ids[1] in str(ambiguous.value)


def test_submit_wait_prints_the_full_id_a_line_per_step_and_a_readable_result(cli_env):
    waited = CliRunner().invoke(main, ["submit", "demo", "items=2", "sleep=0.1", "--wait"])
    assert waited.exit_code == 0, waited.output
    lines = waited.output.splitlines()
    assert lines[0].startswith("Started demo job ") and len(lines[0].split()[-1]) == 36
    steps = [line for line in lines[1:] if "%" in line]
    assert len(steps) >= 2 and steps[-1].strip().startswith("100.0%")
    texts = [line.split("%", 1)[1] for line in steps]
    assert all(a != b for a, b in zip(texts, texts[1:], strict=False))  # a line per change of step
    assert lines[-2:] == ["double: 2", "negated: -1"]
    raw = CliRunner().invoke(main, ["submit", "demo", "items=2", "sleep=0.1", "--wait", "--json"])
    assert raw.exit_code == 0 and raw.output.rstrip().endswith('"negated": -1\n}'), raw.output


@pytest.fixture
def html_server() -> Iterator[str]:
    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = b"<html><body>Welcome to nginx!</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_a_server_that_is_down_or_not_conveyor_is_one_line_and_no_traceback(html_server, monkeypatch):
    monkeypatch.setenv("CONVEYOR_TOKEN", "cvy_whatever")
    monkeypatch.setenv("CONVEYOR_URL", f"http://127.0.0.1:{free_port()}")
    for args in (["jobs"], ["status", "12345678"], ["submit", "demo", "items=1", "--wait"]):
        line = _one_line_error(CliRunner().invoke(main, args))
        assert "cannot reach http://127.0.0.1:" in line and "CONVEYOR_URL" in line

    for wrong in ("127.0.0.1:5000", "htp://127.0.0.1:5000", "http://[::1"):
        monkeypatch.setenv("CONVEYOR_URL", wrong)
        assert "CONVEYOR_URL" in _one_line_error(CliRunner().invoke(main, ["jobs"])), wrong

    monkeypatch.setenv("CONVEYOR_URL", html_server)
    for args in (["jobs"], ["submit", "demo", "items=1"]):
        line = _one_line_error(CliRunner().invoke(main, args))
        assert "not Conveyor's JSON" in line and "CONVEYOR_URL" in line


def test_a_database_without_tables_is_one_line_that_says_to_upgrade(tmp_path, monkeypatch):
    from conveyor.config import configure, load_settings

    empty = tmp_path / "empty.db"
    empty.touch()
    configure(load_settings({**os.environ, "DATABASE_URL": f"sqlite:///{empty}"}))
    try:
        line = _one_line_error(CliRunner().invoke(main, ["reconcile"]))
    finally:
        from pipelines.store.db import dispose_all

        dispose_all()
        configure()
    assert "has no tables yet: run `conveyor db upgrade`" in line


def _conveyor(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = isolated_env(cwd / "unused", **env)
    environ.pop("CONVEYOR_VAR_DIR")
    environ["CONVEYOR_BROKER"] = "stub"
    return subprocess.run([CONVEYOR, *args], cwd=cwd, env=environ, capture_output=True, text=True, timeout=120)


def test_users_create_in_a_fresh_folder_makes_its_database_or_leaves_nothing(tmp_path):
    made = _conveyor(tmp_path, "users", "create", "alice")
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip().splitlines()[-1].startswith("cvy_")
    assert (tmp_path / "var" / "conveyor.db").is_file()

    linked = _conveyor(tmp_path, "users", "link", "alice")
    assert linked.returncode == 0, linked.stderr
    assert linked.stdout.strip().splitlines()[-1].startswith("http://127.0.0.1:5000/#token=cvy_")
    nobody = _conveyor(tmp_path, "users", "link", "zed")
    assert nobody.returncode == 1 and "no user is named 'zed'" in nobody.stderr

    fresh = tmp_path / "fresh"
    fresh.mkdir()
    broken = _conveyor(fresh, "users", "create", "bob", DATABASE_URL=f"sqlite:///{fresh}/var/db/{'x' * 300}.db")
    assert broken.returncode == 1 and "Traceback" not in broken.stderr, broken.stderr
    assert len(broken.stderr.strip().splitlines()) == 1, broken.stderr
    assert list(fresh.iterdir()) == []  # no stray var/ folder


def test_sign_in_tokens_are_reused_until_a_new_link_is_made(tmp_path, monkeypatch):
    from conveyor.config import configure, load_settings, settings
    from pipelines.services.users import create_user, forget_cached_tokens, user_for_token
    from pipelines.store.db import dispose_all
    from pipelines.store.migrate import upgrade
    from web.devserver import first_user_link, sign_in_token

    configure(load_settings({**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'var' / 'conveyor.db'}",
                             "CONVEYOR_VAR_DIR": str(tmp_path / "var")}))
    forget_cached_tokens()
    try:
        upgrade()
        first = sign_in_token("demo")
        assert sign_in_token("demo") == first  # make demo: the same user and token every run
        assert user_for_token(first) is not None
        assert (Path(settings().var_dir) / "tokens" / "demo").stat().st_mode & 0o077 == 0

        create_user("carol")  # a user made elsewhere: its token is not known here
        name, link = first_user_link("0.0.0.0", 5000)
        assert name == "demo" and link == f"http://127.0.0.1:5000/#token={first}"

        monkeypatch.chdir(tmp_path)
        relinked = CliRunner().invoke(main, ["users", "link", "demo"])
        assert relinked.exit_code == 0, relinked.output
        token = relinked.output.strip().rsplit("#token=", 1)[1]
        assert token != first and user_for_token(first) is None and user_for_token(token) is not None
        assert first_user_link("127.0.0.1", 5000)[1].endswith(token)  # make dev shows the new link
    finally:
        dispose_all()
        forget_cached_tokens()
        configure()


def test_submit_wait_prints_lecture_notes_as_markdown(cli_env, tmp_path):
    lecture = tmp_path / "lecture.txt"
    lecture.write_text("Today we look at how a database survives a crash. A write-ahead log is a file where the "
                       "database records every change before it applies it. To sum up, log first.\n")
    waited = CliRunner().invoke(main, ["submit", "lecture_notes", f"transcript=@{lecture}", "--wait"])
    assert waited.exit_code == 0, waited.output
    markdown = waited.output.split("\n# ", 1)[1]
    assert markdown.startswith("How a Database Survives a Crash\n")
    assert "## Definitions" in markdown and "- **Write-ahead log**: A file where the database" in markdown


@pytest.mark.slow
def test_make_dev_prints_a_working_sign_in_link_on_every_run(tmp_path):
    from scripts.dev_server import dev_server

    var = tmp_path / "var"
    var.mkdir()
    made = _conveyor(var, "users", "create", "alice",
                     DATABASE_URL=f"sqlite:///{var / 'conveyor.db'}")
    assert made.returncode == 0, made.stderr
    links = []
    for _ in range(2):  # alice was made by hand first; then a second run finds the token kept by the first
        with dev_server(var) as server:
            assert httpx.get(f"{server.url}/api/jobs", headers={"Authorization": f"Bearer {server.token}"},
                             timeout=10).status_code == 200
            links.append(server.token)
            log = (var / "server.log").read_text()
            assert "Sign in as alice" in log and "`conveyor users link alice` makes a new link" in log
            assert ("no longer works" in log) == (len(links) == 1)  # said once: alice's token was replaced
    assert links[0] == links[1]
