"""The dashboard end to end: `conveyor dev` on 127.0.0.1 (embedded broker and worker), driven in Debian's
headless Chromium by Playwright (no browser download)."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from scripts.dev_server import DevServer, dev_server
from tests.support.media import FIVE_SENTENCES, SAMPLE, sample_opening
from tests.support.services import IN_CI
from tests.support.waiting import wait_until
from tests.support.webhooks import Receiver

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
#: ms between the page's polls (POLL_MS in app.js): a test moves the page's clock on by it instead of waiting
POLL_MS = 2_500
#: ms between the job page's checks on a finished job's unsettled webhook
WEBHOOK_RECHECK_MS = 4 * POLL_MS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    """``conveyor dev`` in a fresh var/ folder; its first-run sign-in link gives the token."""
    # Loopback URLs allowed so a webhook can reach this test's receiver on 127.0.0.1.
    with dev_server(tmp_path_factory.mktemp("dev"), CONVEYOR_PROGRESS_INTERVAL="0.1",
                    CONVEYOR_FETCH_ALLOW_LOOPBACK="true") as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        message = "Debian's chromium is not installed (apt-get install -y chromium)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server: DevServer):
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.requests_seen = []
    page.on("request", lambda request: page.requests_seen.append(request.url))
    yield page
    context.close()


def api(server: DevServer):
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.token}"}, timeout=10)


def wait_for_progress(page, selector: str, condition: str, timeout: float = 20_000) -> float:
    """Wait until the progress bar matched by ``selector`` has ``aria-valuenow`` (``v``) meeting ``condition``."""
    script = ("([selector]) => { const bar = document.querySelector(selector); if (!bar) return false; "
              f"const v = +bar.getAttribute('aria-valuenow'); return ({condition}) ? v : false; }}")
    return float(page.wait_for_function(script, arg=[selector], timeout=timeout).json_value())


def progress_of(locator) -> float:
    return float(locator.get_attribute("aria-valuenow"))


def test_the_sign_in_link_stores_the_token_and_clears_the_address_bar(page, server: DevServer):
    page.goto(server.sign_in_link)
    page.get_by_role("heading", name="Jobs").wait_for()
    assert "token" not in page.url
    assert page.evaluate("sessionStorage.getItem('conveyor.token')") == server.token
    # Without a token, the sign-in form shows; a pasted token signs in.
    fresh = page.context.new_page()
    fresh.goto(server.url + "/")
    fresh.get_by_label("Token").fill(server.token)
    fresh.get_by_role("button", name="Sign in").click()
    fresh.get_by_role("heading", name="Jobs").wait_for()


def test_a_job_started_from_the_form_shows_live_progress_and_its_result(page, server: DevServer):
    page.goto(server.sign_in_link)
    page.get_by_role("link", name="New job").first.click()
    page.locator("#pipeline").select_option("demo")
    page.locator("#field-items").fill("4")
    page.locator("#field-sleep").fill("1.2")
    page.locator("#field-fail_items").fill("2")
    page.get_by_role("button", name="Start job").click()

    # The job page follows the job live: the bar moves between 0 and 100 before the job ends
    page.wait_for_url(re.compile(r"#/jobs/[0-9a-f-]{36}$"))
    bar = page.get_by_role("progressbar", name="Job progress")
    wait_for_progress(page, "[aria-label='Job progress']", "v > 0 && v < 100")
    midway = progress_of(bar)
    page.locator("[data-stage=work] [data-items]").wait_for()
    page.locator("h1 .badge[data-status=completed]").wait_for(timeout=30_000)
    assert progress_of(bar) == 100.0 >= midway

    # Stage timeline with item counts, the tolerated failure, the result
    assert page.locator("[data-stage=work] [data-items]").inner_text() == "3 of 4 items done, 1 failed"
    assert "item 2" in page.locator("#item-errors").inner_text()
    assert "double" in page.locator("#result").inner_text()
    # Progress came over an event stream opened with a signed grant, never with the token in a URL
    assert any("/events?access=" in url for url in page.requests_seen)
    assert not any(server.token in url for url in page.requests_seen)

    # The list shows it finished
    page.get_by_role("link", name="← Jobs").click()
    job_id = page.url.split("/")[-1] if "#/jobs/" in page.url else None
    row_bar = page.locator("#jobs tbody tr").first.get_by_role("progressbar")
    wait_for_progress(page, "#jobs tbody tr [role=progressbar]", "v === 100")
    assert progress_of(row_bar) == 100.0
    assert job_id is None  # we are back on the list


def test_the_list_updates_running_jobs_live(page, server: DevServer):
    with api(server) as client:
        job = client.post("/api/jobs", json={"pipeline": "demo", "input": {"items": 3, "sleep": 1.5}}).json()
    page.goto(server.sign_in_link)
    row_bar = page.locator(f"tr[data-job-id='{job['id']}'] [role=progressbar]")
    row_bar.wait_for()
    seen = wait_for_progress(page, f"tr[data-job-id='{job['id']}'] [role=progressbar]", "v > 0 && v < 100")
    assert 0 < seen < 100
    wait_for_progress(page, f"tr[data-job-id='{job['id']}'] [role=progressbar]", "v === 100", timeout=30_000)
    assert page.locator(f"tr[data-job-id='{job['id']}'] .badge").inner_text() == "completed"


def test_cancel_and_retry_buttons(page, server: DevServer):
    with api(server) as client:
        job = client.post("/api/jobs", json={"pipeline": "demo", "input": {"items": 2, "sleep": 20}}).json()
    page.goto(server.sign_in_link)
    page.goto(f"{server.url}/#/jobs/{job['id']}")
    page.get_by_role("button", name="Cancel").click()
    page.locator("h1 .badge[data-status=canceled]").wait_for()
    page.get_by_role("button", name="Retry").click()
    page.locator("h1 .badge[data-status=processing]").wait_for()
    with api(server) as client:
        assert client.get(f"/api/jobs/{job['id']}").json()["attempt"] == 2
        client.post(f"/api/jobs/{job['id']}/cancel")


def test_the_job_page_lists_the_warnings_of_a_completed_job(page, server: DevServer):
    with api(server) as client:
        job = client.post("/api/jobs", json={"pipeline": "demo", "input": {"items": 2, "warn_items": [1]}}).json()
    page.goto(server.sign_in_link)
    page.goto(f"{server.url}/#/jobs/{job['id']}")
    page.locator("h1 .badge[data-status=completed]").wait_for()
    warnings = page.get_by_role("note")
    warnings.filter(has_text="1 warning").wait_for()
    assert "work: item 1 made do (demo_warning)" in warnings.inner_text()


def test_the_job_page_tells_how_its_webhook_went(page, server: DevServer):
    receiver = Receiver()
    receiver.answers = [404]  # an answer that ends the delivery
    receiver.answering.clear()  # held, so the page opens on a delivery still pending
    page.clock.install()  # the page's own clock, moved on below instead of waiting for its slow poll
    try:
        with api(server) as client:
            job = client.post("/api/jobs", json={"pipeline": "demo", "input": {"items": 1},
                                                 "webhook_url": receiver.url}).json()
            page.goto(server.sign_in_link)
            page.goto(f"{server.url}/#/jobs/{job['id']}")
            page.locator("h1 .badge[data-status=completed]").wait_for()
            webhook = page.locator("#job-webhook")
            webhook.filter(has_text="pending").wait_for()
            receiver.answering.set()
            wait_until(lambda: client.get(f"/api/jobs/{job['id']}").json()["webhook"]["status"] != "pending",
                       what="the delivery to settle")
        # The job has ended, and the page keeps asking until the delivery settles
        page.clock.fast_forward(WEBHOOK_RECHECK_MS)
        webhook.filter(has_text="failed — answered 404; not retried").wait_for()
    finally:
        receiver.answering.set()
        receiver.server.shutdown()
    assert len(receiver.calls) == 1


def test_a_result_file_gets_a_player_and_a_download_link(page, server: DevServer):
    with api(server) as client:
        stored = client.post("/api/files", files={"file": ("lecture.mp3", SAMPLE.read_bytes())}).json()
        job = client.post("/api/jobs", json={"pipeline": "noop_chain", "input": {"audio": f"file:{stored['id']}"}}).json()
    page.goto(server.sign_in_link)
    page.goto(f"{server.url}/#/jobs/{job['id']}")
    audio = page.locator("#result audio")
    audio.wait_for(timeout=30_000)
    source = audio.get_attribute("src")
    assert source.startswith(f"/api/files/{stored['id']}?access=")
    download = page.get_by_role("link", name="Download lecture.mp3")
    response = page.request.get(server.url + download.get_attribute("href"))
    assert response.status == 200
    assert response.headers["content-type"] == "audio/mpeg"
    assert response.body() == SAMPLE.read_bytes()


def test_the_form_uploads_a_file_for_a_file_field(page, server: DevServer):
    with api(server) as client:
        pipelines = {p["name"]: p for p in client.get("/api/pipelines").json()["pipelines"]}
    with_files = [
        (name, field) for name, p in pipelines.items()
        for field, schema in p["input_schema"].get("properties", {}).items()
        if schema.get("format") == "conveyor-file" or "file:<id>" in schema.get("description", "")
    ]
    if not with_files:
        pytest.skip("no registered pipeline takes a file input")
    name, field = with_files[0]
    page.goto(server.sign_in_link)
    page.goto(f"{server.url}/#/new/{name}")
    page.locator(f"#field-{field}").set_input_files(str(SAMPLE))
    page.get_by_role("button", name="Start job").click()
    page.wait_for_url(re.compile(r"#/jobs/[0-9a-f-]{36}$"))
    job_id = page.url.split("/")[-1]
    with api(server) as client:
        job = client.get(f"/api/jobs/{job_id}").json()
        assert job["input"][field].startswith("file:")
        client.post(f"/api/jobs/{job_id}/cancel")


def test_queue_stats_page(page, server: DevServer):
    page.goto(server.sign_in_link)
    page.get_by_role("link", name="Queues").click()
    page.locator("#queues tr[data-queue=default]").wait_for()
    assert "Workers seen" in page.locator("#workers").inner_text()
    assert int(page.locator("[data-count=completed]").inner_text()) >= 0


def test_a_toast_tells_when_a_job_finishes_while_the_page_is_open(page, server: DevServer):
    page.clock.install()
    with page.expect_response(re.compile(r"/api/notifications\?mark_seen=true")):
        page.goto(server.sign_in_link)  # the page marks earlier jobs seen: only this one toasts
    with api(server) as client:
        job = client.post("/api/jobs", json={"pipeline": "demo", "input": {"items": 1}}).json()
        wait_until(lambda: client.get(f"/api/jobs/{job['id']}").json()["status"] == "completed",
                   what="the job to finish")
    page.clock.fast_forward(POLL_MS)
    toast = page.locator(f"#toasts .toast[data-job-id='{job['id']}']")
    toast.wait_for()
    assert "demo completed" in toast.inner_text() and job["id"][:8] in toast.inner_text()
    toast.get_by_role("link").click()
    page.wait_for_url(re.compile(f"#/jobs/{job['id']}$"))


def test_lecture_notes_show_as_a_document_not_json(page, server: DevServer):
    text = ("Good morning. Today we look at how a database survives a crash. A write-ahead log is a file where "
            "the database records every change before it applies it. Copying the changed pages to disk is called "
            "a checkpoint. To sum up, log first and checkpoint often. Recovery reads the log after a crash.")
    with api(server) as client:
        job = client.post("/api/jobs", json={"pipeline": "lecture_notes", "input": {"transcript": text}}).json()
    page.goto(server.sign_in_link)
    page.goto(f"{server.url}/#/jobs/{job['id']}")
    notes = page.locator("#result #notes")
    notes.wait_for(timeout=60_000)
    assert notes.locator("h2").inner_text() == "How a Database Survives a Crash"
    assert notes.locator("h3", has_text="Key takeaways").count() == 1
    assert "Log first and checkpoint often." in notes.locator("ul.takeaways").inner_text()
    assert notes.locator("dl.definitions dt", has_text="Checkpoint").count() == 1
    assert not page.locator("#result pre.json").is_visible()  # the JSON is there, folded away
    page.get_by_role("link", name=f"Download lecture-notes-{job['id'][:8]}.md").wait_for()


def test_subtitles_show_as_a_cue_list(page, server: DevServer, tmp_path: Path):
    recording = sample_opening(tmp_path, FIVE_SENTENCES)
    with api(server) as client:
        stored = client.post("/api/files", files={"file": ("lecture.mp3", recording.read_bytes())}).json()
        job = client.post("/api/jobs", json={"pipeline": "subtitles", "input": {
            "media": f"file:{stored['id']}", "format": "vtt", "glossary": ["photosynthesis"]}}).json()
    page.goto(server.sign_in_link)
    page.goto(f"{server.url}/#/jobs/{job['id']}")
    cues = page.locator("#result #cues li.cue")
    cues.first.wait_for(timeout=240_000)
    assert cues.count() >= 5
    first = cues.first.inner_text()
    assert re.match(r"00:00:\d\d\.\d{3} → 00:00:\d\d\.\d{3} \S", first), first
    assert "photosynthesis" in page.locator("#result #cues").inner_text().lower()
    page.get_by_role("link", name="Download subtitles.vtt").wait_for()


def test_the_form_takes_a_glossary_as_comma_separated_terms(page, server: DevServer):
    page.goto(server.sign_in_link)
    page.goto(f"{server.url}/#/new/lecture_notes")
    page.locator("#field-transcript").fill("A write-ahead log is a file where every change is recorded first.")
    page.locator("#field-glossary").fill("write-ahead log, B-tree ,checkpoint")
    page.get_by_role("button", name="Start job").click()
    page.wait_for_url(re.compile(r"#/jobs/[0-9a-f-]{36}$"))
    with api(server) as client:
        job = client.get(f"/api/jobs/{page.url.split('/')[-1]}").json()
    assert job["input"]["glossary"] == ["write-ahead log", "B-tree", "checkpoint"]
