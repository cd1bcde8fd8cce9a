"""``GET /api/pipelines``: the registered pipelines with their stages, input schemas and availability
(a pipeline whose providers are neither installed nor configured is marked, with the reason)."""

from __future__ import annotations

from typing import Any

from flask_openapi3 import APIBlueprint, Tag

from pipelines.definition import all_pipelines
from web.schemas import PipelinesOut, ProblemOut

bp = APIBlueprint("pipelines", __name__, url_prefix="/api/pipelines", abp_tags=[Tag(name="pipelines")],
                  abp_security=[{"bearer": []}], abp_responses={401: ProblemOut})


def describe_pipelines() -> list[dict[str, Any]]:
    described = []
    for p in all_pipelines():
        reason = p.unavailable()
        described.append({"name": p.name, "description": p.description, "stages": p.stage_names,
                          "input_schema": p.input_model.model_json_schema(),
                          "available": reason is None, "unavailable_reason": reason})
    return described


@bp.get("", responses={200: PipelinesOut}, summary="List the pipelines a job can run")
def list_pipelines() -> dict[str, Any]:
    return {"pipelines": describe_pipelines()}
