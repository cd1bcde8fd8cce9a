"""Case 12, SSRF: URLs naming internal addresses are refused at POST /api/jobs and again in the worker.

No test sends traffic beyond 127.0.0.1. Non-loopback addresses (link-local, private ranges, a
public-looking name) are only ever resolved by the stub resolver, never connected to; every
``socket.connect`` of the process is recorded, and a listening socket on 127.0.0.1 shows that
nothing reached it.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest
from flask import Blueprint, redirect, request

from actors.context import StageContext, stage_context
from actors.errors import InvalidInput
from actors.stages.audio import clean_audio, prepare_audio, remove_noise
from actors.stages.visual import grade_video, roto_video
from conveyor.config import configure, settings
from tests.emulator import start_emulator
from tests.support.jobs import wait_for_job
from tests.support.network import assert_no_connection, port_of

#: Each URL of the issue, aimed (where it is loopback) at the trap's port; ``{port}`` is filled in.
INTERNAL_URLS = [
    "http://127.0.0.1:6379/",
    "http://127.0.0.1:{port}/",
    "https://127.0.0.1:{port}/a.mp3",
    "https://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "https://[::1]:{port}/a.mp3",
    "https://0x7f000001:{port}/a.mp3",
    "https://2130706433:{port}/a.mp3",
    "https://[::ffff:127.0.0.1]:{port}/a.mp3",
    "https://[::ffff:169.254.169.254]/",
    "file:///etc/passwd",
    "gopher://127.0.0.1:6379/_FLUSHALL%0D%0A",
    "https://localhost:{port}/a.mp3",
]
#: Answers of a public-looking name that are not on the public internet.
PRIVATE_ANSWERS = [["127.0.0.1"], ["10.0.0.5"], ["172.16.4.4"], ["192.168.1.20"], ["169.254.169.254"],
                   ["100.64.0.1"], ["fd00::7"], ["fe80::1"], ["93.184.215.14", "10.1.2.3"]]


def post_job(client, auth, url: str, pipeline: str = "noise_removal", field: str = "audio"):
    return client.post("/api/jobs", json={"pipeline": pipeline, "input": {field: url}}, headers=auth)


def assert_field_error(response, field: str = "input.audio") -> str:
    assert response.status_code == 422, response.get_json()
    assert response.mimetype == "application/problem+json"
    (error,) = response.get_json()["errors"]
    assert error["field"] == field
    return error["message"]


def queued_messages(broker: dramatiq.Broker) -> int:
    return sum(broker.queues[name].qsize() for name in broker.queues)


# -- at submission ---------------------------------------------------------------------------------


@pytest.mark.parametrize("template", INTERNAL_URLS)
def test_internal_urls_are_refused_at_submission_with_a_field_error(
    client, auth, dns, connects, listener, stub_broker, template
):
    # Given a URL naming a loopback, link-local or non-https target (loopback ones at a listening port)
    url = template.format(port=port_of(listener))
    # When a job names it
    response = post_job(client, auth, url)
    # Then the request is refused, naming the field; no job exists, nothing was queued or connected
    message = assert_field_error(response)
    assert "https" in message or "public internet" in message or "unusual" in message or "loopback" in message
    assert client.get("/api/jobs", headers=auth).get_json()["jobs"] == []
    assert queued_messages(stub_broker) == 0
    assert connects == [] and dns.lookups in ([], ["localhost"])
    assert_no_connection(listener)


@pytest.mark.parametrize("pipeline, field", [("lecture_notes", "audio"), ("subtitles", "media"),
                                             ("audio_clean", "audio"), ("color_grade", "video"),
                                             ("roto", "video")])
def test_every_pipeline_taking_a_file_vets_its_url(client, auth, connects, pipeline, field):
    body = {"pipeline": pipeline, "input": {field: "https://169.254.169.254/latest/", "preset": "warm"}}
    if pipeline != "color_grade":
        body["input"].pop("preset")
    response = client.post("/api/jobs", json=body, headers=auth)
    assert_field_error(response, f"input.{field}")
    assert connects == []


def test_persona_vets_each_of_its_urls(client, auth, connects):
    response = client.post("/api/jobs", headers=auth, json={"pipeline": "persona", "input": {
        "name": "Ada", "video": "https://[::1]/v.mp4", "photo": "https://10.0.0.1/p.jpg"}})
    assert response.status_code == 422
    assert {e["field"] for e in response.get_json()["errors"]} == {"input.video", "input.photo"}
    assert connects == []


@pytest.mark.parametrize("answers", PRIVATE_ANSWERS, ids=lambda a: "+".join(a))
def test_a_public_looking_name_resolving_to_an_internal_address_is_refused_at_submission(
    client, auth, dns, connects, answers
):
    dns.add("media.example.com", answers)
    message = assert_field_error(post_job(client, auth, "https://media.example.com/lecture.mp3"))
    # Issue 14: the refusal does not say what the name resolved to (no DNS oracle)
    assert "media.example.com is not a public address" in message
    assert not any(answer in message for answer in answers) and "resolves" not in message
    assert dns.lookups == ["media.example.com"] and connects == []


def test_a_name_resolving_to_a_public_address_is_accepted_without_connecting(client, auth, dns, connects):
    # The check is not a blanket refusal: a public answer passes; nothing is fetched by the web process.
    dns.add("media.example.com", ["93.184.215.14"])
    response = post_job(client, auth, "https://media.example.com/lecture.mp3")
    assert response.status_code == 202, response.get_json()
    assert connects == []


def test_free_text_mentioning_an_internal_url_is_not_mistaken_for_a_file(client, auth, connects):
    script = "Scene one: a browser shows http://127.0.0.1/ on screen.\n\nScene two: the cursor blinks twice."
    response = client.post("/api/jobs", headers=auth,
                           json={"pipeline": "video_generation", "input": {"script": script}})
    assert response.status_code == 202, response.get_json()
    assert connects == []


def test_a_webhook_url_naming_an_internal_address_is_refused(client, auth, listener, connects):
    response = client.post("/api/jobs", headers=auth, json={
        "pipeline": "demo", "input": {}, "webhook_url": f"https://127.0.0.1:{port_of(listener)}/hook"})
    assert_field_error(response, "webhook_url")
    assert connects == []
    assert_no_connection(listener)


# -- in the worker ---------------------------------------------------------------------------------

STAGES = [(prepare_audio, "audio"), (prepare_audio, "media"), (remove_noise, "audio"), (clean_audio, "audio"),
          (grade_video, "video"), (roto_video, "video")]


def run_stage(actor: Any, data: dict[str, Any]) -> Any:
    with stage_context(StageContext(job_id="job-ssrf", stage=actor.actor_name, reporter=None)):
        return actor(data)


@pytest.mark.parametrize(("actor", "field"), STAGES, ids=[f"{a.actor_name}-{f}" for a, f in STAGES])
@pytest.mark.parametrize("template", INTERNAL_URLS)
def test_each_stage_refuses_internal_urls_itself(db, dns, connects, listener, actor, field, template):
    # Given a URL that skipped the submission check (an older job, another client of the Python API)
    url = template.format(port=port_of(listener))
    data = {field: url, "preset": "warm"}
    # When the stage that fetches inputs runs / Then it refuses the URL before any connection
    with pytest.raises(InvalidInput) as caught:
        run_stage(actor, data)
    assert caught.value.code in ("url_refused", "invalid_url"), caught.value.message
    assert connects == []
    assert_no_connection(listener)


@pytest.mark.parametrize("answers", PRIVATE_ANSWERS, ids=lambda a: "+".join(a))
def test_a_stage_resolves_again_and_refuses_a_name_now_pointing_inside(db, dns, connects, answers):
    dns.add("media.example.com", answers)
    with pytest.raises(InvalidInput) as caught:
        run_stage(remove_noise, {"audio": "https://media.example.com/a.mp3"})
    assert caught.value.code == "url_refused"
    assert dns.lookups == ["media.example.com"] and connects == []


def test_a_job_whose_name_rebinds_to_loopback_after_submission_fails_in_the_worker(
    client, auth, dns, connects, listener, stub_worker
):
    # Given a name that is public when the job is submitted and loopback (the trap) when the worker looks
    dns.add("media.example.com", ["93.184.215.14"], ["127.0.0.1"])
    url = f"https://media.example.com:{port_of(listener)}/lecture.mp3"
    job = post_job(client, auth, url).get_json()
    # When the worker runs the job / Then the stage refuses it at once, without retries or a connection
    done = wait_for_job(job["id"])
    assert done["status"] == "failed"
    assert done["error"]["code"] == "url_refused" and done["error"]["stage"] == "denoise"
    assert "not a public address" in done["error"]["message"] and "127.0.0.1" not in done["error"]["message"]
    assert done["stages"][0]["attempts"] == 1
    assert dns.lookups == ["media.example.com", "media.example.com"]
    assert connects == []
    assert_no_connection(listener)


# -- a redirect to loopback ------------------------------------------------------------------------


@pytest.fixture
def redirector() -> Iterator[Any]:
    """A loopback server answering ``/to?url=X`` with a redirect to X, under production rules from then on.

    Test-only override: URL inputs may name loopback servers (the first hop), until this server
    answers; then loopback is refused again, as in production, for the redirect it sent.
    """
    before = settings()
    configure(before, fetch_allow_loopback=True)
    bp = Blueprint("redirector", __name__)

    @bp.get("/to")
    def to():
        configure(settings(), fetch_allow_loopback=False)
        return redirect(request.args["url"], code=int(request.args.get("code", 302)))

    server = start_emulator(bp)
    yield server
    server.stop()
    configure(before)


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("target", ["https://127.0.0.1:{port}/x", "http://127.0.0.1:{port}/x",
                                    "https://[::ffff:127.0.0.1]:{port}/x", "https://2130706433:{port}/x",
                                    "https://files.example.com:{port}/x", "gopher://127.0.0.1:{port}/_x"])
def test_a_public_looking_url_redirecting_to_loopback_fails_in_the_worker_without_reaching_it(
    client, auth, dns, connects, listener, redirector, stub_worker, target, code
):
    # Given a public-looking name (resolved to the loopback redirector) that redirects to the trap
    server_port = int(redirector.base_url.rsplit(":", 1)[1])
    dns.add("cdn.example.com", ["127.0.0.1"])
    dns.add("files.example.com", ["127.0.0.1"])
    hop = target.format(port=port_of(listener))
    url = f"http://cdn.example.com:{server_port}/to?code={code}&url={hop}"
    # When it is submitted (the redirect is not known yet: accepted) and the worker fetches it
    response = post_job(client, auth, url)
    assert response.status_code == 202, response.get_json()
    done = wait_for_job(response.get_json()["id"])
    # Then the redirect hop is refused: the job failed once, only the first server was contacted
    assert done["status"] == "failed", done
    assert done["error"]["code"] in ("url_refused", "invalid_url")
    assert done["stages"][0]["attempts"] == 1
    assert len(redirector.calls) == 1
    assert set(connects) == {("127.0.0.1", server_port)}
    assert_no_connection(listener)


def test_the_trap_would_see_a_connection(listener):
    # The observer works: a real connection to the trap is seen (so "no connection" above means something).
    socket.create_connection(("127.0.0.1", port_of(listener)), timeout=1).close()
    with pytest.raises(AssertionError, match="reached the trap"):
        assert_no_connection(listener)
