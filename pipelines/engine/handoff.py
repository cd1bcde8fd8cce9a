"""The hand-off from one stage to the next, decided as a plan in Python and applied by the store.

What follows a stage's end depends on the pipeline's definition (known to the worker) and on the
job's state (known to the database: whether the job still runs, how many of a fan-out's items have
ended). :func:`plan_end` turns the first into a plan without touching the database; the store
applies the plan conditionally under the job's row lock (on PostgreSQL one function call for a whole
batch of ends, see migration ``0003``) and reports an outcome; :func:`outbox_for` turns the outcome
into the messages and notices to send after the commit.

Rare transitions (a job that ends with a webhook or whose result names stored files, a fan-out over
an empty list, failures and retries) take the general path of :mod:`pipelines.engine.machine`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pipelines.definition import Step, get_pipeline
from pipelines.engine import hooks
from pipelines.engine.dispatch import Dispatch, Outbox
from pipelines.engine.progress import history_of, input_size, known_size, remember_size, sized_history

#: Outcomes of applying an end's plan, and the notice each one sends.
NOTICE_OF_OUTCOME = {"counted": "progress", "advanced": "stage", "finished": "status"}


@dataclass(frozen=True, slots=True)
class StageEnd:
    """A stage run that returned ``output``, to be recorded."""

    job_id: str
    run_id: int
    token: str
    pipeline: str
    step: int
    item: int  #: -1 for a step's own run
    output: Any
    started_at: datetime | None = None
    items_total: int | None = None  #: the size of the fan-out this item belongs to
    job_size: float | None = None  #: the job's size (:func:`pipelines.engine.progress.input_size`), carried by its messages


@dataclass(frozen=True, slots=True)
class Applied:
    """What the store did with one end's plan."""

    outcome: str  #: stale | canceled | counted | advanced | finished | slow
    new_runs: list[dict[str, Any]]  #: [{"id", "token", "item"} (+ "actor", "input" for a queued waiting item)]
    joined: Any = None  #: a joined step's output (the next step's input)


def _contains_file_reference(value: Any) -> bool:
    from actors.files.keys import REF_PREFIX

    if isinstance(value, str):
        return value.startswith(REF_PREFIX)
    if isinstance(value, dict):
        return any(_contains_file_reference(v) for v in value.values())
    if isinstance(value, list):
        return any(_contains_file_reference(v) for v in value)
    return False


def _runs_of(step: Step) -> list[dict[str, Any]]:
    return [{"name": step.branches[i] if step.branches else step.name, "actor": actor.actor_name,
             "queue": actor.queue_name} for i, actor in enumerate(step.actors)]


def size_of(end: StageEnd) -> float | None:
    """The size of ``end``'s job: told by its first step's output, else carried by the stage's message,
    else as this process last saw it (no database read on the hand-off)."""
    if end.step == 0:
        size = input_size(end.output)
        remember_size(end.job_id, size)
        return size
    return end.job_size if end.job_size is not None else known_size(end.job_id)


def plan_end(end: StageEnd, durations: dict[int, float] | None = None,
             rates: dict[int, float] | None = None) -> dict[str, Any] | None:
    """The plan the store applies for ``end``, or None when it needs the general path.

    ``durations``: mean past seconds per step of this pipeline, and ``rates``: past seconds per unit of
    size, if known (for the ETA: scaled by the job's size as :func:`pipelines.engine.progress.estimate_eta` does).
    """
    pipeline = get_pipeline(end.pipeline)
    if pipeline is None or end.step >= len(pipeline.steps):
        return None
    size = size_of(end)

    def history(index: int) -> dict[str, float] | None:
        steps = len(pipeline.steps)
        return sized_history(rates, size, steps, index) or history_of(durations, steps, index)
    step = pipeline.steps[end.step]
    total = pipeline.total_weight
    plan: dict[str, Any] = {
        "job": end.job_id, "run": end.run_id, "token": end.token, "step": end.step, "item": end.item,
        "output": end.output,
        "self": {"p_before": pipeline.weight_before(end.step) / total, "p_weight": step.weight / total,
                 "cap": step.concurrency, "queue": step.actors[0].queue_name,
                 "join": "object" if step.kind == "parallel" else "list",
                 "history": history(end.step)},
        "next": None,
    }
    index = end.step + 1
    if index == len(pipeline.steps):
        # The job ends: its result is the output itself, unless it names stored files (they become
        # file rows) or a finish hook other than the webhook's needs the Python transaction.
        if end.item >= 0 or _contains_file_reference(end.output) or not hooks.finish_needs_no_python():
            return None
        return plan
    following = pipeline.steps[index]
    plan["next"] = {
        "kind": following.kind, "name": following.name, "step_text": following.name.replace("_", " ").capitalize(),
        "progress": round(100.0 * pipeline.weight_before(index) / total, 2), "cap": following.concurrency,
        "runs": _runs_of(following), "history": history(index),
    }
    return plan


def outbox_for(end: StageEnd, applied: Applied) -> Outbox:
    """The messages and notice that follow an applied plan, to send after its commit."""
    outbox = Outbox()
    kind = NOTICE_OF_OUTCOME.get(applied.outcome)
    if kind is not None:
        outbox.notify(end.job_id, kind)
    if not applied.new_runs:
        return outbox
    pipeline = get_pipeline(end.pipeline)
    assert pipeline is not None
    values: dict[int, Any]
    if applied.outcome == "counted":  # waiting items of the same capped fan-out, queued now
        step, items_total = pipeline.steps[end.step], end.items_total
        values = {int(run["item"]): run["input"] for run in applied.new_runs}
    else:
        step = pipeline.steps[end.step + 1]
        value = applied.joined if end.item >= 0 else end.output
        if step.kind == "fan_out":
            values, items_total = dict(enumerate(value)), len(value)
        elif step.kind == "parallel":
            values, items_total = dict.fromkeys(range(len(step.actors)), value), len(step.actors)
        else:
            values, items_total = {-1: value}, None
    size = size_of(end)
    for run in applied.new_runs:
        item = int(run["item"])
        index = max(item, 0)
        outbox.dispatches.append(Dispatch(
            step.actor_for(index).actor_name, values[item], end.job_id, int(run["id"]), str(run["token"]), None,
            step.policy_for(index).time_limit, items_total, False, end.pipeline, size))
    return outbox
