"""Job results as text a person reads: lecture notes as Markdown, other results as ``name: value`` lines.

Shared by the lecture-notes stage (which stores ``notes.md``), ``conveyor submit --wait`` and ``conveyor demo``.
"""

from __future__ import annotations

import json
from typing import Any

#: Result keys of lecture notes; a result holding them all is shown as notes.
NOTES_KEYS = ("title", "summary", "sections", "key_takeaways", "definitions")


def is_notes(result: Any) -> bool:
    return isinstance(result, dict) and all(k in result for k in NOTES_KEYS)


def notes_markdown(result: dict[str, Any]) -> str:
    """The lecture notes as a Markdown document."""
    lines = [f"# {result['title']}", "", result["summary"], ""]
    for section in result["sections"]:
        lines += [f"## {section['heading']}", "", section["content"], ""]
    if result["key_takeaways"]:
        lines += ["## Key takeaways", ""] + [f"- {t}" for t in result["key_takeaways"]] + [""]
    if result["definitions"]:
        lines += ["## Definitions", ""] + [f"- **{d['term']}**: {d['definition']}" for d in result["definitions"]]
        lines.append("")
    return "\n".join(lines)


def _short(value: Any, width: int = 200) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= width else text[: width - 1] + "…"


def readable(result: Any, base_url: str = "") -> str:
    """``result`` for a person: notes as Markdown, else one ``name: value`` line per key, file URLs absolute."""
    if is_notes(result):
        return notes_markdown(result)
    if not isinstance(result, dict):
        return _short(result, 2000)
    lines = []
    for key, value in result.items():
        if isinstance(value, str) and value.startswith("/api/files/"):
            value = base_url.rstrip("/") + value
        lines.append(f"{key}: {_short(value)}")
    return "\n".join(lines)
