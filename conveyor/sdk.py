"""What a pipeline author imports, in one place.

    from conveyor.sdk import Pipeline, current_stage, fan_out, stage, stage_actor

A pipeline module needs pieces from three layers (the composition from :mod:`pipelines`, the
actor decorator and stage context from :mod:`actors`, the errors a stage raises); this module
re-exports them so that an author's code does not depend on where each one lives. Nothing in
Conveyor itself imports it.
"""

from __future__ import annotations

from actors.context import current_stage
from actors.errors import InvalidMedia, PermanentError, RateLimited, StageError, TransientError
from actors.stage import stage_actor
from pipelines.definition import Pipeline, fan_out, parallel, stage

__all__ = [
    "InvalidMedia",
    "PermanentError",
    "Pipeline",
    "RateLimited",
    "StageError",
    "TransientError",
    "current_stage",
    "fan_out",
    "parallel",
    "stage",
    "stage_actor",
]
