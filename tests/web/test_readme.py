"""The README's code blocks, run exactly as written."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", (ROOT / "README.md").read_text(), flags=re.S | re.M)


def test_the_own_pipeline_block_is_the_example_module_the_suite_runs():
    block = next(b for b in python_blocks() if "stage_actor" in b)
    module = (ROOT / "examples" / "word_count.py").read_text()
    body = ast.get_source_segment(module, ast.parse(module)) or module
    docstring = ast.get_docstring(ast.parse(module))
    assert docstring is not None
    without_docstring = body.split('"""', 2)[2].lstrip("\n")
    assert block == without_docstring  # and tests/pipelines/test_example_pipeline.py runs that module end to end


@pytest.mark.slow
def test_the_client_block_runs_as_written(base_url, user, monkeypatch, capsys):
    block = next(b for b in python_blocks() if "conveyor.client" in b)
    monkeypatch.setenv("CONVEYOR_URL", base_url)
    monkeypatch.setenv("CONVEYOR_TOKEN", user.token)
    monkeypatch.chdir(ROOT)
    exec(compile(block, "README.md", "exec"), {"__name__": "readme"})  # noqa: S102 - the README's own code
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].endswith("%") or "%" in printed[0]
    assert printed[-1] and "%" not in printed[-1]  # the title
    assert any(line.startswith("100% ") for line in printed)
