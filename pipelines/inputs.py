"""Pieces shared by the pipelines' input models (see :mod:`pipelines.audio` and :mod:`pipelines.visual`)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

#: How a job input names a file; ends the description of every file field.
FILE_REF = "an uploaded file as \"file:<id>\", or an https:// URL"

#: The spoken language of a recording to transcribe.
Language = Annotated[str | None, Field(description="ISO 639-1 code of the spoken language (detected if unset).")]
#: How long the pieces of a recording to transcribe are.
ChunkSeconds = Annotated[float | None, Field(ge=10, le=600, description="Target chunk length in seconds (60).")]


def file_field(what: str) -> Any:
    """A required file input, described as ``what`` (e.g. "The video") and how to name the file."""
    return Field(description=f"{what}: {FILE_REF}.")
