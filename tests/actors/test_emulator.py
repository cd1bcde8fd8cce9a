"""The provider emulator base: a real loopback HTTP server, call records, faults and async jobs."""

from __future__ import annotations

import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from flask import Blueprint, jsonify, request

from tests.emulator import (  # noqa: F401  (emulator is a fixture)
    DONE,
    FAILED,
    PENDING,
    RUNNING,
    EmulatedJob,
    JobStore,
    emulator,
    start_emulator,
)


def known(job: EmulatedJob | None) -> EmulatedJob:
    """The job a store call returned, for calls made with an id the store issued."""
    assert job is not None, "the store knows every id it issued"
    return job


def generations_api(store: JobStore) -> Blueprint:
    """A miniature create-then-poll API in the shape of Luma's."""
    bp = Blueprint("generations", __name__)

    @bp.post("/v1/generations")
    def create():
        job = store.create(request.get_json())
        return jsonify({"id": job.id, "state": job.status}), 201

    @bp.get("/v1/generations/<job_id>")
    def poll(job_id: str):
        job = store.poll(job_id)
        if job is None:
            return jsonify({"detail": "not found"}), 404
        return jsonify({"id": job.id, "state": job.status, "result": job.result, "failure": job.error})

    @bp.post("/v1/uploads")
    def upload():
        data = request.files["file"].read()
        return jsonify({"size": len(data), "purpose": request.form.get("purpose")})

    return bp


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store() -> JobStore:
    return JobStore(done_after_polls=2)


@pytest.fixture
def emu(store):
    server = start_emulator(generations_api(store))
    yield server
    server.stop()


def test_emulator_serves_blueprints_on_a_loopback_port(emu):
    # Given a started emulator / When a job is created over HTTP
    assert emu.base_url.startswith("http://127.0.0.1:")
    assert int(emu.base_url.rsplit(":", 1)[1]) > 0
    response = httpx.post(emu.url("/v1/generations"), json={"prompt": "a cat", "aspect_ratio": "16:9"})
    # Then the blueprint answered
    assert response.status_code == 201
    assert response.json()["state"] == PENDING


def test_a_create_then_poll_job_is_done_after_the_configured_polls(emu):
    job_id = httpx.post(emu.url("/v1/generations"), json={"prompt": "x"}).json()["id"]
    states = [httpx.get(emu.url(f"/v1/generations/{job_id}")).json()["state"] for _ in range(3)]
    assert states == [RUNNING, DONE, DONE]
    final = httpx.get(emu.url(f"/v1/generations/{job_id}")).json()
    assert final["result"] == {"output": job_id}
    assert httpx.get(emu.url("/v1/generations/nope")).status_code == 404


def test_every_call_is_recorded_with_method_path_headers_and_field_names(emu):
    httpx.post(
        emu.url("/v1/generations?wait=0"),
        json={"prompt": "a", "model": "ray"},
        headers={"Authorization": "Bearer k"},
    )
    httpx.post(emu.url("/v1/uploads"), files={"file": ("a.wav", b"x" * 1234)}, data={"purpose": "voice"})

    create, upload = emu.calls
    assert (create.method, create.path, create.query) == ("POST", "/v1/generations", {"wait": "0"})
    assert create.headers["authorization"] == "Bearer k"
    assert create.json == {"prompt": "a", "model": "ray"}
    assert create.fields == ("model", "prompt")
    assert upload.form == ("purpose",) and upload.files == {"file": 1234}
    assert upload.fields == ("file", "purpose")
    assert len(emu.calls_to("/v1/generations", "POST")) == 1


def test_the_blueprint_still_reads_an_upload_after_it_was_recorded(emu):
    answer = httpx.post(emu.url("/v1/uploads"), files={"file": ("a.bin", b"y" * 5000)}, data={"purpose": "p"})
    assert answer.json() == {"size": 5000, "purpose": "p"}


def test_fail_next_answers_a_429_with_retry_after_once_then_the_real_api(emu):
    emu.fail_next("/v1/generations", 429, headers={"Retry-After": "7"})

    first = httpx.post(emu.url("/v1/generations"), json={"prompt": "a"})
    second = httpx.post(emu.url("/v1/generations"), json={"prompt": "a"})

    assert first.status_code == 429 and first.headers["retry-after"] == "7"
    assert first.json()["error"]["status"] == 429
    assert second.status_code == 201
    assert [c.fault for c in emu.calls] == [429, None]


def test_fail_next_honours_times_method_prefix_and_custom_bodies(emu):
    emu.fail_next("/v1/generations", 503, times=2, method="GET")
    emu.fail_next("/v1/uploads", 400, body="bad file")

    assert httpx.post(emu.url("/v1/generations"), json={}).status_code == 201  # other method: untouched
    assert [httpx.get(emu.url("/v1/generations/x")).status_code for _ in range(3)] == [503, 503, 404]
    bad = httpx.post(emu.url("/v1/uploads"), files={"file": ("a", b"1")})
    assert (bad.status_code, bad.text) == (400, "bad file")
    emu.fail_next("/v1/", 500)
    emu.reset()
    assert emu.calls == [] and httpx.get(emu.url("/v1/generations/x")).status_code == 404


def test_requests_are_served_concurrently():
    # Given an endpoint that waits until a second request arrives
    arrived = threading.Event()
    bp = Blueprint("slow", __name__)

    @bp.get("/wait")
    def wait():
        return {"released": arrived.wait(5)}

    @bp.get("/release")
    def release():
        arrived.set()
        return {}

    with start_emulator(bp) as server, ThreadPoolExecutor(2) as pool:
        waiting = pool.submit(httpx.get, server.url("/wait"), timeout=10)
        httpx.get(server.url("/release"))
        # Then the first request was released by the second one, which it did not block
        assert waiting.result().json() == {"released": True}


def test_stop_closes_the_port(emu):
    port = int(emu.base_url.rsplit(":", 1)[1])
    emu.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1)
    emu.stop()  # idempotent


def test_the_fixture_starts_emulators_from_blueprints(emulator, store):  # noqa: F811
    server = emulator(generations_api(store))
    assert httpx.post(server.url("/v1/generations"), json={}).status_code == 201


def test_a_job_store_job_is_done_after_the_configured_seconds_without_polls():
    clock = FakeClock()
    store = JobStore(done_after_polls=None, done_after_seconds=30, clock=clock)
    job = store.create({"a": 1})
    assert known(store.get(job.id)).status == PENDING and job.polls == 0
    clock.now += 10
    assert known(store.poll(job.id)).status == RUNNING
    clock.now += 20
    assert known(store.get(job.id)).status == DONE
    assert job.polls == 1


def test_a_job_is_done_at_whichever_comes_first_polls_or_seconds():
    clock = FakeClock()
    store = JobStore(done_after_polls=5, done_after_seconds=60, clock=clock)
    by_polls, by_time = store.create(), store.create()
    for _ in range(5):
        store.poll(by_polls.id)
    clock.now += 61
    assert by_polls.status == DONE
    assert known(store.poll(by_time.id)).status == DONE and by_time.polls == 1


def test_a_job_can_be_made_to_fail_and_overrides_apply_per_job():
    store = JobStore(done_after_polls=3, result=lambda job: {"video": f"{job.input['name']}.mp4"})
    failing = store.create({"name": "a"}, fail_with="content policy", polls_needed=1)
    quick = store.create({"name": "b"}, polls_needed=1)
    assert known(store.poll(failing.id)).status == FAILED and failing.error == "content policy"
    assert known(store.poll(quick.id)).result == {"video": "b.mp4"}
    assert store.poll("unknown") is None
    slow = store.create()
    assert known(store.cancel(slow.id)).status == "canceled"
    assert known(store.poll(slow.id)).status == "canceled" and slow.polls == 0
    assert len(store) == 3


def test_a_store_without_thresholds_finishes_at_the_first_poll():
    store = JobStore(done_after_polls=None)
    job = store.create()
    assert known(store.get(job.id)).status == PENDING
    assert known(store.poll(job.id)).status == DONE
