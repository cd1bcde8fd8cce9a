"""Composing pipelines in code: stages, fan-outs and parallel branches, and the registry of a process.

A pipeline is data: a name, an input model and a list of steps run one after another.

    lecture_notes = Pipeline("lecture_notes", input_model=LectureInput, steps=[
        stage(prepare_audio, weight=5),
        fan_out(transcribe_chunk, weight=40, concurrency=4),
        stage(merge_notes, weight=10),
    ])

Each step receives the previous step's output (the first, the job's input). A fan-out
sends one message per element of that list and outputs the list of item results; a
parallel step runs different actors on the same input and outputs ``{branch: result}``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import dramatiq
from pydantic import BaseModel

from actors.providers import CAPABILITIES, unavailable_reason
from actors.stage import RetryPolicy, actor_policy
from conveyor.errors import ConveyorError

StepKind = Literal["stage", "fan_out", "parallel"]
FailurePolicy = Literal["fail", "tolerate"]


class DefinitionError(ConveyorError):
    """Raised when a pipeline is declared wrongly."""


@dataclass(frozen=True)
class Step:
    """One step of a pipeline."""

    kind: StepKind
    name: str
    actors: tuple[dramatiq.Actor, ...]
    branches: tuple[str, ...]  #: branch names of a parallel step (else empty)
    weight: float
    policies: tuple[RetryPolicy, ...]  #: one per actor
    concurrency: int = 0  #: fan-out: most items in flight at once (0 = all)
    on_failure: FailurePolicy = "fail"

    def policy_for(self, item: int) -> RetryPolicy:
        return self.policies[item if self.kind == "parallel" else 0]

    def actor_for(self, item: int) -> dramatiq.Actor:
        return self.actors[item if self.kind == "parallel" else 0]

    @property
    def has_items(self) -> bool:
        return self.kind != "stage"


def _name_of(actor: dramatiq.Actor) -> str:
    return actor.actor_name


def _check_actor(actor: Any) -> dramatiq.Actor:
    if not isinstance(actor, dramatiq.Actor):
        raise DefinitionError(f"{actor!r} is not a Dramatiq actor; declare it with @stage_actor")
    return actor


def _policy(actor: dramatiq.Actor, settings: dict[str, float | None]) -> RetryPolicy:
    """The actor's own policy with a step's overrides."""
    try:
        return actor_policy(actor).overridden(**settings)
    except TypeError as exc:
        raise DefinitionError(f"step {_name_of(actor)!r}: {exc}") from None


def stage(
    actor: dramatiq.Actor,
    *,
    name: str | None = None,
    weight: float = 1.0,
    **policy: float | None,
) -> Step:
    """One actor run once on the previous step's output.

    ``policy``: :class:`RetryPolicy` settings (``retries``, ``time_limit``...) overriding the actor's own.
    """
    actor = _check_actor(actor)
    return Step("stage", name or _name_of(actor), (actor,), (), weight, (_policy(actor, policy),))


def fan_out(
    actor: dramatiq.Actor,
    *,
    name: str | None = None,
    weight: float = 1.0,
    concurrency: int = 8,
    on_failure: FailurePolicy = "fail",
    **policy: float | None,
) -> Step:
    """One message per element of the previous output (a list), at most ``concurrency`` at once.

    ``on_failure="fail"`` fails the job when an item fails after its retries;
    ``"tolerate"`` completes the step, reporting the failed items in the job's ``errors``.
    ``policy``: :class:`RetryPolicy` settings (``retries``, ``time_limit``...) overriding the actor's own.
    """
    actor = _check_actor(actor)
    if on_failure not in ("fail", "tolerate"):
        raise DefinitionError(f"on_failure must be 'fail' or 'tolerate', not {on_failure!r}")
    if concurrency < 0:
        raise DefinitionError("concurrency must be 0 (no cap) or more")
    return Step("fan_out", name or _name_of(actor), (actor,), (), weight, (_policy(actor, policy),), concurrency,
                on_failure)


def parallel(*branches: dramatiq.Actor | Step, name: str = "parallel", weight: float = 1.0) -> Step:
    """Different actors at once on the same input, joined before the next step into ``{branch: output}``.

    A branch is an actor or a ``stage(...)`` (to set its name and policy). Any branch failing fails the job.
    """
    if len(branches) < 2:
        raise DefinitionError("parallel needs at least two branches")
    steps = [b if isinstance(b, Step) else stage(b) for b in branches]
    if any(s.kind != "stage" for s in steps):
        raise DefinitionError("parallel branches must be actors or stage(...) steps")
    names = tuple(s.name for s in steps)
    if len(set(names)) != len(names):
        raise DefinitionError(f"parallel branch names must differ: {names}")
    return Step(
        "parallel", name, tuple(s.actors[0] for s in steps), names, weight, tuple(s.policies[0] for s in steps)
    )


class EmptyInput(BaseModel):
    """The input model of a pipeline that declares none: any JSON object."""

    model_config = {"extra": "allow"}


@dataclass(frozen=True)
class OtherJob:
    """What a pipeline's ``prepare_input`` may learn of another job: whose it is, what it ran, how it
    ended, and its last step's output (None until that step has finished)."""

    pipeline: str
    user_id: str | None
    status: str
    output: Any


#: ``job_id -> OtherJob | None``: the one question a ``prepare_input`` may ask the job store.
JobLookup = Callable[[str], OtherJob | None]


@dataclass
class Pipeline:
    """A named list of steps, with the model its input must satisfy."""

    name: str
    steps: list[Step]
    description: str = ""
    input_model: type[BaseModel] = EmptyInput
    #: ``(lookup, input, user_id) -> input``: turns the validated input into what the first stage
    #: receives (e.g. another job's result, through ``lookup``). Raise ``conveyor.errors.InvalidJobInput`` to refuse.
    prepare_input: Callable[[JobLookup, dict[str, Any], str | None], dict[str, Any]] | None = field(
        default=None, repr=False)
    #: The provider capabilities its stages call (``"transcribe"``, ``"tts"``...; see
    #: :mod:`actors.providers`): a job is refused where one of them can run neither locally nor in the cloud.
    needs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.steps:
            raise DefinitionError(f"pipeline {self.name!r} has no steps")
        names = [s.name for s in self.steps]
        if len(set(names)) != len(names):
            raise DefinitionError(f"pipeline {self.name!r} has two steps with one name: {names}")
        unknown = sorted(set(self.needs) - CAPABILITIES)
        if unknown:
            raise DefinitionError(f"pipeline {self.name!r} needs unknown capabilities {unknown}")
        self.total_weight = sum(s.weight for s in self.steps) or 1.0

    @property
    def stage_names(self) -> list[str]:
        return [s.name for s in self.steps]

    def weight_before(self, index: int) -> float:
        return sum(s.weight for s in self.steps[:index])

    def unavailable(self) -> str | None:
        """Why this pipeline cannot run in this install and configuration, or None when it can.

        Found without importing any provider's packages, so the web process can answer it.
        """
        return unavailable_reason(self.needs)


    def actors(self) -> list[dramatiq.Actor]:
        """Every actor its steps run."""
        return [actor for step in self.steps for actor in step.actors]


class Registry:
    """The pipelines one process runs, by name. ``pipelines.worker.setup`` fills it and makes it current."""

    def __init__(self, pipelines: list[Pipeline] | tuple[Pipeline, ...] = ()) -> None:
        self._by_name: dict[str, Pipeline] = {}
        for pipeline in pipelines:
            self.add(pipeline)

    def add(self, pipeline: Pipeline, *, replace: bool = False) -> Pipeline:
        """Add ``pipeline``; another of the same name is an error unless ``replace`` (a test's own)."""
        existing = self._by_name.get(pipeline.name)
        if existing is not None and existing is not pipeline and not replace:
            raise DefinitionError(f"two pipelines are named {pipeline.name!r}")
        self._by_name[pipeline.name] = pipeline
        return pipeline

    def remove(self, name: str) -> None:
        self._by_name.pop(name, None)

    def get(self, name: str) -> Pipeline | None:
        return self._by_name.get(name)

    def all(self) -> list[Pipeline]:
        return sorted(self._by_name.values(), key=lambda p: p.name)


_current = Registry()


def use_registry(registry: Registry) -> None:
    """Make ``registry`` the one :func:`get_pipeline` answers from (the composition root's job)."""
    global _current
    _current = registry


def current_registry() -> Registry:
    return _current


def get_pipeline(name: str) -> Pipeline | None:
    return _current.get(name)


def all_pipelines() -> list[Pipeline]:
    return _current.all()
