"""Workers that die or are stopped mid-stage: nothing is lost and no completed stage runs twice."""

from __future__ import annotations

import time

import pytest

from pipelines.services.jobs import start_job
from tests.reliability.faulty import CREATE_PATH
from tests.reliability.invariant import assert_invariant, executions, stage_runs
from tests.support.jobs import wait_for_job
from tests.support.waiting import wait_until


def _starts(job_id: str, stage: str) -> list[dict]:
    return [r for r in executions(job_id, "start") if r["stage"] == stage]


def _run(job_id: str, name: str):
    return next(r for r in stage_runs(job_id) if r.name == name)


def test_a_worker_killed_mid_stage_has_the_stage_run_again_elsewhere_within_15_seconds(start_worker, measure):
    # Given a job whose middle stage works for 3 s on worker A, and an idle worker B
    first = start_worker("a")
    job = start_job(pipeline="rel_chain", input={"seconds": 3, "tag": "sigkill"})["id"]
    wait_until(lambda: _starts(job, "hold"), timeout=30, what="the middle stage to start")
    second = start_worker("b")
    time.sleep(0.5)
    # When A is killed with SIGKILL mid-stage
    first.kill()
    killed_at = time.monotonic()
    # Then the stage runs again on B within 15 s
    wait_until(lambda: len(_starts(job, "hold")) == 2, timeout=15, what="the killed stage to run again")
    rerun_after = time.monotonic() - killed_at
    measure("SIGKILL: the killed stage started again after", rerun_after)
    # And the job completes, the killed run counted as one attempt, no stage completed twice
    done = assert_invariant(wait_for_job(job, timeout=30)["id"], status="completed")
    first_run, rerun = _starts(job, "hold")
    assert first_run["pid"] != rerun["pid"] and rerun["attempt"] == 2
    assert _run(job, "hold").attempts == 2
    assert done["result"]["final"]["attempt"] == 2
    assert second.process.poll() is None


@pytest.mark.parametrize("whole_group", [False, True], ids=["main-process", "whole-group"])
def test_a_worker_stopped_mid_stage_exits_within_30_seconds_and_another_finishes_the_job(
        start_worker, scratch, measure, whole_group):
    # Given a stage that would work for two minutes, running on worker A, and an idle worker B
    gate = scratch / "release"
    first = start_worker("a")
    job = start_job(pipeline="rel_chain", input={"seconds": 120, "gate": str(gate), "tag": "sigterm"})["id"]
    wait_until(lambda: _starts(job, "hold"), timeout=30, what="the long stage to start")
    second = start_worker("b")
    time.sleep(0.5)
    # When A is told to stop: SIGTERM to Dramatiq's main process (as Docker and Kubernetes send it), or
    # to every process of the worker at once (as Heroku and systemd do; each worker process then gets two)
    signalled = time.monotonic()
    took = first.terminate(timeout=40, group=whole_group)
    kind = "whole group" if whole_group else "main process"
    measure(f"SIGTERM to the {kind}: the worker exited after", took)
    # Then it exits within 30 s, having interrupted the stage and handed it back to worker B
    assert took < 30
    assert "Worker shutdown notification" in first.output()
    wait_until(lambda: len(_starts(job, "hold")) == 2, timeout=10, what="worker B to take the handed-back stage")
    measure(f"SIGTERM to the {kind}: the other worker started the handed-back stage after",
            time.monotonic() - signalled)
    gate.touch()
    # And B finishes the job; the interrupted run spent no attempt
    assert_invariant(wait_for_job(job, timeout=30)["id"], status="completed")
    interrupted, finished = _starts(job, "hold")
    assert interrupted["pid"] != finished["pid"]
    assert interrupted["attempt"] == finished["attempt"] == 1
    assert _run(job, "hold").attempts == 1
    assert second.process.poll() is None


def test_a_worker_killed_after_checkpointing_a_provider_job_resumes_polling_it_and_pays_once(
        start_worker, provider, measure):
    # Given a paid provider job that takes 8 s, created and checkpointed by a stage on worker A
    emulator = provider(done_after_polls=None, done_after_seconds=8)
    first = start_worker("a")
    job = start_job(pipeline="rel_provider", input={"poll_interval": 0.3, "max_polls": 200})["id"]
    checkpoint = wait_until(lambda: (_run(job, "render").checkpoint or {}).get("provider_id"), timeout=30,
                            what="the provider id to be checkpointed")
    wait_until(lambda: emulator.calls_to(f"{CREATE_PATH}/{checkpoint}", "GET"), timeout=10,
               what="the stage to poll the provider")
    second = start_worker("b")
    # When A is killed between the checkpoint and the end of the polling
    first.kill()
    killed_at = time.monotonic()
    polls_before = len(emulator.calls_to(CREATE_PATH, "GET"))
    # Then the rerun polls the same provider job, and the job completes with one paid create call
    done = assert_invariant(wait_for_job(job, timeout=45)["id"], status="completed")
    measure("SIGKILL after checkpoint: the job completed after", time.monotonic() - killed_at)
    assert len(emulator.calls_to(CREATE_PATH, "POST")) == 1
    polls = emulator.calls_to(CREATE_PATH, "GET")
    assert len(polls) > polls_before and {c.path for c in polls} == {f"{CREATE_PATH}/{checkpoint}"}
    result = done["result"]["final"]
    assert result["provider_id"] == checkpoint
    assert (result["created_by_attempt"], result["finished_by_attempt"]) == (1, 2)
    crashed, resumed = _starts(job, "render")
    assert crashed["saved"] is None and resumed["saved"] == checkpoint
    assert second.process.poll() is None


def test_a_worker_killed_while_a_stage_waits_in_poll_later_loses_nothing(start_worker, provider, measure):
    # Given a stage that checkpointed its provider job and now waits 3 s in poll-later, its delayed
    # message held in worker A's memory
    emulator = provider(done_after_polls=None, done_after_seconds=3)
    first = start_worker("a")
    job = start_job(pipeline="rel_provider", input={"max_polls": 1, "poll_later": 3})["id"]
    wait_until(lambda: _run(job, "render").status == "queued" and _run(job, "render").checkpoint, timeout=30,
               what="the stage to wait in poll-later")
    second = start_worker("b")
    # When A is killed while the stage waits
    first.kill()
    killed_at = time.monotonic()
    # Then another worker polls the same provider job, and the job completes within about 15 s
    done = assert_invariant(wait_for_job(job, timeout=20)["id"], status="completed")
    measure("SIGKILL during poll-later: the job completed after", time.monotonic() - killed_at)
    assert len(emulator.calls_to(CREATE_PATH, "POST")) == 1
    assert done["result"]["final"]["created_by_attempt"] == 1
    assert second.process.poll() is None


def test_a_worker_killed_with_fetched_but_unstarted_messages_loses_none_of_them(start_worker, measure):
    import redis

    from tests.support.services import RELIABILITY_REDIS_URL

    client = redis.Redis.from_url(RELIABILITY_REDIS_URL)
    # Given a one-thread worker A running one fan-out item and holding the next one, fetched but not started
    first = start_worker("a", threads=1)
    job = start_job(pipeline="rel_fanout", input={"items": 4, "sleep": 2})["id"]

    def next_item_held() -> bool:
        # Runs are claimed when their messages are fetched: the running item and the held one are both
        # 'processing', and both messages are in A's set of fetched, unacknowledged messages.
        runs = [r for r in stage_runs(job) if r.name == "items" and r.item >= 0]
        held = [r for r in runs if r.status == "processing" and r.dispatch_token and any(
            client.sismember(key, r.dispatch_token) for key in client.keys("dramatiq:__acks__.*.default"))]
        return len(held) >= 2

    wait_until(next_item_held, timeout=30, what="worker A to hold an item it has not started")
    second = start_worker("b")
    # When A is killed
    first.kill()
    killed_at = time.monotonic()
    # Then both the running item and the held one run elsewhere, and the job completes
    assert_invariant(wait_for_job(job, timeout=40)["id"], status="completed")
    measure("SIGKILL with a fetched, unstarted item: the job completed after", time.monotonic() - killed_at)
    assert second.process.poll() is None
