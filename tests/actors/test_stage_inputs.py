"""A stage's declared input model: validated before the body runs, refused at once with the stage's name."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from actors.context import StageContext, stage_context
from actors.errors import InvalidInput, classify
from actors.stage import RetryPolicy, StageFailure, actor_policy, stage_actor
from actors.stage_inputs import ChunkInput
from actors.stages import audio as audio_stages
from actors.stages import visual as visual_stages
from pipelines.definition import DefinitionError, Pipeline, fan_out, stage
from pipelines.services.jobs import start_job
from pipelines.worker import add_pipeline
from tests.support.jobs import wait_for_job

calls: list[object] = []


class Count(BaseModel):
    count: int
    model_config = {"extra": "allow"}


@stage_actor(actor_name="inputs_doubled", input=Count, retries=3, min_backoff=0.01)
def doubled(data: Count) -> dict[str, object]:
    calls.append(data)
    return {"count": data.count * 2, "note": getattr(data, "note", None)}


typed = Pipeline("inputs_typed", [stage(doubled, name="double")])


@pytest.fixture(autouse=True)
def _reset():
    calls.clear()


# --- the decorator, called as a plain function ---------------------------------------------------


def test_the_body_receives_an_instance_of_the_model_with_the_other_keys_kept():
    assert doubled({"count": "3", "note": "kept"}) == {"count": 6, "note": "kept"}
    assert isinstance(calls[0], Count) and calls[0].count == 3
    assert doubled(data={"count": 1}) == {"count": 2, "note": None}  # by name too
    assert doubled(Count(count=4))["count"] == 8  # an instance is taken as it is


def test_a_payload_that_is_not_an_object_is_refused_in_the_stages_name():
    with pytest.raises(InvalidInput, match="^inputs_doubled expects a JSON object, got list$") as caught:
        doubled([1, 2])
    assert caught.value.code == "invalid_input" and not caught.value.transient
    assert calls == []


def test_a_payload_that_misses_the_model_is_refused_with_the_field_and_the_stages_name():
    with pytest.raises(InvalidInput, match="^inputs_doubled got an invalid input: count: ") as caught:
        doubled({"count": "many"})
    assert classify(caught.value).code == "invalid_input"
    assert calls == []


def test_under_the_engine_a_refused_payload_is_a_permanent_failure():
    with stage_context(StageContext(stage="double", managed=True)):
        outcome = doubled({"count": None})
    assert isinstance(outcome, StageFailure)
    info = classify(outcome.exception)
    assert (info.code, info.transient) == ("invalid_input", False)
    assert "inputs_doubled" in info.message


def test_a_built_in_stage_refuses_a_non_object_as_it_did_by_hand():
    for actor in (audio_stages.prepare_audio, audio_stages.transcribe_chunk, visual_stages.render_scene,
                  visual_stages.join_persona, visual_stages.speak_text):
        with pytest.raises(InvalidInput, match=f"^{actor.actor_name} expects a JSON object, got str$"):
            actor("not an object")


def test_a_failed_item_passes_through_summarize_unchanged():
    failed = {"error": {"code": "provider_unavailable", "message": "down"}}
    assert ChunkInput.model_validate(failed).failed
    assert not ChunkInput.model_validate({"index": 0, "error": None}).failed
    assert audio_stages.summarize_chunk(failed) == failed


# --- through the engine --------------------------------------------------------------------------


def test_a_job_whose_input_misses_the_model_fails_at_once_naming_the_stage(stub_worker):
    add_pipeline(typed, replace=True)
    done = wait_for_job(start_job(pipeline=typed.name, input={"count": "many"})["id"])
    assert done["status"] == "failed"
    assert done["error"]["code"] == "invalid_input" and done["error"]["stage"] == "double"
    assert done["error"]["message"].startswith("inputs_doubled got an invalid input: count: ")
    assert done["stages"][0]["attempts"] == 1  # no retry spent, though the stage has three
    assert calls == []


def test_a_job_runs_its_stage_on_the_typed_input(stub_worker):
    add_pipeline(typed, replace=True)
    done = wait_for_job(start_job(pipeline=typed.name, input={"count": 21, "note": "n"})["id"])
    assert done["status"] == "completed"
    assert done["result"] == {"count": 42, "note": "n"}


# --- the retry policy, spelled once --------------------------------------------------------------


def test_the_policy_is_the_defaults_then_the_actors_then_the_steps():
    assert actor_policy(doubled) == RetryPolicy(retries=3, min_backoff=0.01)
    assert RetryPolicy().retries == 3 and RetryPolicy().time_limit == 600.0
    step = stage(doubled, retries=1, max_wait=None)
    assert step.policies[0] == RetryPolicy(retries=1, min_backoff=0.01)
    assert fan_out(doubled, time_limit=5).policies[0].time_limit == 5
    assert doubled.options["time_limit"] == 600_000


def test_an_unknown_retry_setting_is_refused():
    with pytest.raises(TypeError, match="retires"):
        stage_actor(retires=2)
    with pytest.raises(DefinitionError, match="retires"):
        stage(doubled, retires=2)


def test_a_payload_missing_what_the_stage_works_on_is_refused_in_the_stages_name():
    with pytest.raises(InvalidInput, match="^split_audio got an invalid input: neither the prepared audio"):
        audio_stages.split_audio({"duration": 3.0})
    with pytest.raises(InvalidInput, match="^transcribe_chunk got an invalid input: the item names no chunk"):
        audio_stages.transcribe_chunk({"index": 0, "total": 1})
