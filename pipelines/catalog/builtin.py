"""Built-in pipelines for tests, benchmarks and a first look at the engine."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from actors.stages import demo
from pipelines.definition import EmptyInput, Pipeline, fan_out, parallel, stage


class DemoInput(BaseModel):
    """Ask the demo pipeline for work: how many items, how slow, which fail and how."""

    model_config = {"extra": "forbid"}

    items: int = Field(3, ge=0, le=500, description="how many fan-out items")
    sleep: float = Field(0.0, ge=0, le=60, description="seconds each item works")
    fail_items: list[int] = Field(default_factory=list, max_length=500, description="indexes of items that fail")
    fail_mode: Literal["transient", "permanent"] = "permanent"
    fail_times: int = Field(1, ge=0, le=10, description="transient failures before an item succeeds")
    warn_items: list[int] = Field(default_factory=list, max_length=500,
                                  description="indexes of items that warn (`demo_warning`) on every attempt")
    wait_seconds: float = Field(0.0, ge=0, le=60, description="an external wait, polled without a thread")


def _demo_steps(on_failure: Literal["fail", "tolerate"]) -> list:
    return [
        stage(demo.demo_prepare, name="prepare", weight=1),
        fan_out(demo.demo_work, name="work", weight=6, concurrency=4, on_failure=on_failure),
        stage(demo.demo_count, name="count", weight=1),
        parallel(stage(demo.demo_double, name="double"), stage(demo.demo_negate, name="negated"),
                 name="branches", weight=1),
        stage(demo.demo_merge, name="merge", weight=1),
    ]


demo_pipeline = Pipeline(
    "demo", _demo_steps("tolerate"), input_model=DemoInput,
    description="Fan-out with tolerated item failures, then parallel branches: for trying the engine.",
)
demo_strict = Pipeline(
    "demo_strict", _demo_steps("fail"), input_model=DemoInput,
    description="The demo pipeline where any failed item fails the job.",
)
noop_chain = Pipeline(
    "noop_chain", [stage(demo.noop, name=f"stage{i}") for i in range(1, 5)], input_model=EmptyInput,
    description="Four stages that do nothing: measures the engine's own cost.",
)
noop_fanout = Pipeline(
    "noop_fanout",
    [stage(demo.noop_items, name="split"), fan_out(demo.noop, name="items", concurrency=0),
     stage(demo.noop, name="join")],
    input_model=EmptyInput, description="A fan-out of `items` (default 100) items that do nothing.",
)
