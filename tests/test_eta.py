"""The ETA a client sees, replayed along a lecture's progress trail: no early lie, and close enough later.

The trail is shaped like the 160 s lecture whose dashboard once said "ETA 1 s" at 12.5 %: quick
first steps (prepare 4 s, split 2 s) carry a tenth of the weight, then transcription takes 100 s,
summaries 40 s and the merge 10 s. Reports come every second, as stages send them.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pipelines.progress import MEASURABLE, eta_from, history_of

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


def replay(history: dict[int, float] | None):
    """(progress, ETA, seconds really left) at every report of the trail."""
    for now, index, step_started, fraction, progress, left in trail():
        step_start_progress = 100.0 * sum(w for w, _ in STEPS[:index]) / sum(w for w, _ in STEPS)
        eta = eta_from(progress, step_start_progress, T0 + timedelta(seconds=step_started),
                       T0 + timedelta(seconds=now), history_of(history, len(STEPS), index), fraction)
        yield progress, eta, left


def test_with_no_history_there_is_no_eta_until_a_step_has_made_measurable_progress():
    for progress, eta, left in replay(history=None):
        if 12.0 <= progress <= 13.0:  # transcription has just begun: the moment that said "1 s"
            assert eta is None or abs(eta - left) <= 0.5 * left, (progress, eta, left)
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
