"""Pieces shared by the pipelines' input models (see :mod:`pipelines.catalog.audio` and :mod:`pipelines.catalog.visual`)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

from actors.files.urls import URL_VALUE

#: How a job input names a file; ends the description of every file field.
FILE_REF = "an uploaded file as \"file:<id>\", or an https:// URL"
#: The JSON Schema ``format`` of a file field: the dashboard offers a file picker for it.
FILE_FORMAT = "conveyor-file"


class StrictInput(BaseModel):
    """An input model that refuses fields it does not define (a misspelt option is an error)."""

    model_config = ConfigDict(extra="forbid")


def _names_a_file(value: str) -> str:
    # Refused at submission, not by the worker: a value that is neither can never be fetched.
    # A URL's scheme and address are vetted next (actors.files.urls), an uploaded file's owner at creation.
    if (value.startswith("file:") and len(value) > len("file:")) or URL_VALUE.match(value):
        return value
    raise PydanticCustomError("file_ref", f"must be {FILE_REF}")


#: A job input that names a file.
FileRef = Annotated[str, AfterValidator(_names_a_file),
                    Field(max_length=2048, json_schema_extra={"format": FILE_FORMAT})]

#: The spoken language of a recording to transcribe.
Language = Annotated[str | None, Field(max_length=16, description="ISO 639-1 code of the spoken language (detected if unset).")]
#: How long the pieces of a recording to transcribe are.
ChunkSeconds = Annotated[float | None, Field(ge=10, le=600, description="Target chunk length in seconds (60).")]


#: The most glossary terms, and the longest term (characters).
MAX_GLOSSARY_TERMS = 100
MAX_GLOSSARY_TERM_CHARS = 60


def _split_terms(value: Any) -> Any:
    # A form field or a command line gives "a, b, c"; a list stays a list. Blank terms are dropped.
    if isinstance(value, str):
        value = value.split(",")
    if isinstance(value, list):
        return [t.strip() if isinstance(t, str) else t for t in value if not (isinstance(t, str) and not t.strip())]
    return value


#: Terms a recording uses (names, jargon), to transcribe and spell them right.
Glossary = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=MAX_GLOSSARY_TERM_CHARS)]] | None,
    BeforeValidator(_split_terms),
    Field(max_length=MAX_GLOSSARY_TERMS,
          description=f"Up to {MAX_GLOSSARY_TERMS} terms the speaker uses (each up to {MAX_GLOSSARY_TERM_CHARS} "
                      "characters), spelled as they should be written: they guide the transcription, and the "
                      "notes use their spelling. A list, or one comma-separated string."),
]


def file_field(what: str) -> Any:
    """A required file input, described as ``what`` (e.g. "The video") and how to name the file."""
    return Field(description=f"{what}: {FILE_REF}.")
