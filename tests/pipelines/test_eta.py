"""The ETA a client sees, replayed along a lecture's progress trail: no early lie, and close enough later.

The trail is shaped like the 160 s lecture whose dashboard once said "ETA 1 s" at 12.5 %: quick
first steps (prepare 4 s, split 2 s) carry a tenth of the weight, then transcription takes 100 s,
summaries 40 s and the merge 10 s. Reports come every second, as stages send them.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from pipelines.engine import progress
from pipelines.engine.progress import MEASURABLE, eta_from, history_of, input_size, sized_history
from pipelines.store.models import Job, RunStatus, StageRun, iso, utcnow

#: (weight, seconds) of lecture_notes' steps: prepare, split, transcribe, summarize, merge.
STEPS = [(5, 4.0), (5, 2.0), (50, 100.0), (30, 40.0), (10, 10.0)]
T0 = datetime(2026, 12, 4, 10, 0, 0)


def trail(durations: list[float] | None = None):
    """(time, step, fraction of the step, job progress, seconds really left), one report a second."""
    durations = durations or [seconds for _, seconds in STEPS]
    total_weight = sum(weight for weight, _ in STEPS)
    total_time = sum(durations)
    started = 0.0
    for index, ((weight, _), seconds) in enumerate(zip(STEPS, durations, strict=True)):
        before = sum(w for w, _ in STEPS[:index])
        for tick in range(int(seconds)):
            fraction = tick / seconds
            progress = 100.0 * (before + weight * fraction) / total_weight
            now = started + tick
            yield now, index, started, fraction, progress, total_time - now
        started += seconds


def replay(history: dict[int, float] | None, *, rates: dict[int, float] | None = None, size: float | None = None):
    """(progress, ETA, seconds really left) at every report of the trail.

    ``history``: past seconds per step; ``rates`` and ``size``: past seconds per unit of size and this
    job's size, preferred from the second step on (as :func:`pipelines.engine.progress.estimate_eta` does).
    """
    for now, index, step_started, fraction, done, left in trail():
        step_start_progress = 100.0 * sum(w for w, _ in STEPS[:index]) / sum(w for w, _ in STEPS)
        past = sized_history(rates, size, len(STEPS), index) or history_of(history, len(STEPS), index)
        eta = eta_from(done, step_start_progress, T0 + timedelta(seconds=step_started),
                       T0 + timedelta(seconds=now), past, fraction)
        yield done, eta, left


def test_with_no_history_there_is_no_eta_until_a_step_has_made_measurable_progress():
    for done, eta, left in replay(history=None):
        if 12.0 <= done <= 13.0:  # transcription has just begun: the moment that said "1 s"
            assert eta is None or abs(eta - left) <= 0.5 * left, (done, eta, left)
    early = [eta for progress, eta, _ in replay(history=None) if progress < 10.0 + 50 * MEASURABLE]
    assert all(eta is None for eta in early[6:])  # once the quick steps are done, nothing until transcription moves


def test_with_history_every_eta_after_20_percent_is_within_half_of_the_time_really_left():
    # Given past step durations from a lecture a tenth longer
    past = {i: seconds * 1.1 for i, (_, seconds) in enumerate(STEPS)}
    replayed = [(progress, eta, left) for progress, eta, left in replay(past) if progress >= 20.0]
    # Then an ETA is shown at every report after 20 %, each within 50 % of what was really left
    assert all(eta is not None for _, eta, _ in replayed)
    worst = max(abs(eta - left) / left for _, eta, left in replayed)
    assert worst <= 0.5, worst


def test_with_no_history_an_eta_shown_never_says_less_than_half_the_time_left():
    # The current step's rate is all there is: a slow step makes the quicker ones after it look slow too,
    # so the ETA may run long (up to 1.6x here), but it never tells a user it is nearly done when it is not.
    shown = [(progress, eta, left) for progress, eta, left in replay(None) if eta is not None]
    assert shown, "no ETA was shown at all"
    assert all(0.5 * left <= eta <= 2.0 * left for _, eta, left in shown), min(eta / left for _, eta, left in shown)


def test_with_history_from_a_job_twice_as_long_the_eta_is_scaled_by_this_jobs_size():
    # Given history from a lecture twice as long as this one (1,200 s of audio; this one 600 s), whose
    # steps took twice as long
    past = {i: seconds * 2 for i, (_, seconds) in enumerate(STEPS)}
    rates = {step: seconds / 1200.0 for step, seconds in past.items()}
    # Then with the history scaled by this job's size, every ETA after 20 % is within 50 % of what was left
    scaled = [(p, eta, left) for p, eta, left in replay(past, rates=rates, size=600.0) if p >= 20.0]
    assert all(eta is not None for _, eta, _ in scaled)
    worst = max(abs(eta - left) / left for _, eta, left in scaled)
    assert worst <= 0.5, worst
    # While the same history unscaled promises about twice the time
    unscaled = [(p, eta, left) for p, eta, left in replay(past) if p >= 20.0]
    assert max(abs(eta - left) / left for _, eta, left in unscaled) > 0.5


def test_a_jobs_size_is_the_media_seconds_or_the_items_its_first_step_made():
    assert input_size({"audio": "storage:a", "duration": 612.5}) == 612.5
    assert input_size([{"scene_number": 1}, {"scene_number": 2}]) == 2.0
    assert input_size({"transcript": "...", "duration": None}) is None
    assert input_size([]) is None and input_size("text") is None


def _job(session, items: int, durations: list[float] | None, *, step: int = 5) -> str:
    """A demo job whose prepare step made ``items`` items and whose steps took ``durations`` s."""
    job = Job(pipeline="demo", status="completed" if durations else "processing", errors=[],
              stages=[{"name": str(i), "status": "pending", "progress": 0.0, "started_at": None} for i in range(5)])
    session.add(job)
    session.flush()
    for index, seconds in enumerate(durations or [0.5]):
        session.add(StageRun(job_id=job.id, step=index, name=str(index), status=RunStatus.COMPLETED.value,
                             duration=seconds, output=[{"index": i} for i in range(items)] if index == 0 else None))
    if not durations:
        job.stages[step]["started_at"] = iso(utcnow())
    return job.id


def test_the_engine_scales_past_durations_by_the_jobs_item_count(db, stub_broker, monkeypatch):
    from pipelines.definition import get_pipeline
    from pipelines.store.db import transaction
    from pipelines.store.jobrow import lock_job

    monkeypatch.setattr(progress, "HISTORY_TTL", 0.0)  # no history cached by earlier tests
    demo = get_pipeline("demo")
    assert demo is not None
    # Given two past demo jobs of 8 and 4 items whose steps took time in proportion
    with transaction() as session:
        _job(session, 8, [1.0, 16.0, 1.0, 2.0, 1.0])
        _job(session, 4, [1.0, 8.0, 0.5, 1.0, 0.5])
        current = _job(session, 2, None, step=1)
    # When a job of 2 items starts its fan-out
    with transaction() as session:
        job = lock_job(session, current)
        assert job is not None
        job.progress = 100.0 * demo.weight_before(1) / demo.total_weight
        eta = progress.estimate_eta(session, job, demo, 1, 0.0)
        plain = history_of(progress.past_durations(session, "demo"), 5, 1)
    # Then it is told what 2 items took before (2 s per item; 0.5 s per item for the rest), not the mean
    assert eta == pytest.approx(2 * 2.0 + 2 * (0.125 + 0.25 + 0.125))
    assert plain is not None and plain["self"] + plain["after"] == pytest.approx(12.0 + 0.75 + 1.5 + 0.75)


def test_the_fast_hand_off_scales_the_eta_by_the_jobs_size_as_the_slow_path_does(db, stub_broker, monkeypatch):
    from sqlalchemy import select

    from pipelines.definition import get_pipeline
    from pipelines.engine import machine as engine
    from pipelines.engine.tracking import ActiveRun, StageTracking
    from pipelines.services.jobs import get_job, start_job
    from pipelines.store.db import autocommit, transaction
    from pipelines.store.jobrow import lock_job

    monkeypatch.setattr(progress, "HISTORY_TTL", 0.0)  # no history cached by earlier tests
    demo = get_pipeline("demo")
    assert demo is not None
    # Given two past demo jobs of 4 items (after the first step: 10 s in all, 2.5 s per item)
    with transaction() as session:
        _job(session, 4, [1.0, 8.0, 0.5, 1.0, 0.5])
        _job(session, 4, [1.0, 8.0, 0.5, 1.0, 0.5])
        plain = history_of(progress.past_durations(session, "demo"), 5, 1)
    assert plain is not None
    # When a job of 8 items ends its first step on the planned (fast) path
    job_id = start_job(pipeline="demo", input={"items": 8})["id"]
    with transaction() as session:
        run = session.scalars(select(StageRun).where(StageRun.job_id == job_id, StageRun.step == 0)).one()
        token = run.dispatch_token or ""
    with autocommit() as connection:
        got = engine.claim(connection, job_id, run.id, token, 10.0, first_step=True)
    assert got is not None
    items = [{"index": i, "sleep": 0.0, "fail": False, "fail_mode": "permanent", "fail_times": 1} for i in range(8)]

    def general_path(*args, **kwargs):
        raise AssertionError("the end took the general path")

    monkeypatch.setattr(engine, "complete", general_path)
    with transaction() as session:
        outbox = StageTracking._finish(session, ActiveRun(job_id, run.id, token, got.started_at, 0, -1, "demo"),
                                       items, None)
    fast = get_job(job_id)["eta_seconds"]
    # Then its ETA is twice the past jobs' time, as the general path's estimate for the same moment says
    with transaction() as session:
        job = lock_job(session, job_id)
        assert job is not None
        slow = progress.estimate_eta(session, job, demo, 1, 0.0)
    assert slow == pytest.approx(2 * (plain["self"] + plain["after"]))
    assert fast == pytest.approx(slow, rel=0.05)
    # and the next stage's messages carry the size, so the ends of its items need no database read for it
    assert outbox.dispatches and all(d.job_size == 8.0 for d in outbox.dispatches)


def test_an_item_end_plans_a_sized_eta_from_the_size_its_message_carried(db, stub_broker):
    from pipelines.engine.handoff import StageEnd, plan_end

    progress._sizes.clear()  # a process that never saw this job's first step
    rates = {1: 2.0, 2: 0.125, 3: 0.25, 4: 0.125}
    durations = {0: 1.0, 1: 8.0, 2: 0.5, 3: 1.0, 4: 0.5}
    end = StageEnd("job-x", 1, "token", "demo", 1, 0, {"index": 0}, None, 8, job_size=8.0)
    plan = plan_end(end, durations, rates)
    assert plan is not None
    assert plan["self"]["history"] == {"self": pytest.approx(16.0), "after": pytest.approx(4.0)}
    unsized = plan_end(StageEnd("job-x", 1, "token", "demo", 1, 0, {"index": 0}, None, 8), durations, rates)
    assert unsized is not None and unsized["self"]["history"] == {"self": 8.0, "after": 2.0}


def test_the_general_path_s_messages_carry_the_size_too(db, stub_broker):
    """A first step ended by the general path (the engine's transaction) tells the next stage's messages
    the job's size, as the fast path does, so their ends scale the ETA without reading it."""
    from sqlalchemy import select

    from pipelines.definition import get_pipeline
    from pipelines.engine import machine as engine
    from pipelines.engine.dispatch import Outbox
    from pipelines.services.jobs import start_job
    from pipelines.store.db import transaction
    from pipelines.store.jobrow import lock_job

    progress._sizes.clear()
    demo = get_pipeline("demo")
    assert demo is not None
    job_id = start_job(pipeline="demo", input={"items": 3})["id"]
    items = [{"index": i, "sleep": 0.0, "fail": False, "fail_mode": "permanent", "fail_times": 1} for i in range(3)]
    with transaction() as session:
        job = lock_job(session, job_id)
        assert job is not None
        outbox = engine.finish_step(session, job, demo, 0, items)
    assert outbox.dispatches and all(d.job_size == 3.0 for d in outbox.dispatches)
    # and a retry queued later by the engine carries it as well
    with transaction() as session:
        job = lock_job(session, job_id)
        assert job is not None
        run = session.scalars(select(StageRun).where(StageRun.job_id == job_id, StageRun.step == 1,
                                                     StageRun.item == 0)).one()
        retried = Outbox()
        engine.requeue_run(job, run, demo.steps[1].policy_for(run.item), retried)
    assert [d.job_size for d in retried.dispatches] == [3.0]
