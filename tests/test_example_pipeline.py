"""The README's "your own pipeline" example runs as written."""

from __future__ import annotations

from examples.word_count import word_count
from pipelines.jobs import start_job
from tests.support import wait_for_job


def test_the_readme_example_pipeline_runs_end_to_end(stub_worker):
    job = start_job(pipeline=word_count.name, input={"text": "one two three\n\nfour five\nsix"})
    done = wait_for_job(job["id"])
    assert done["status"] == "completed"
    assert done["result"] == {"lines": 3, "words": 6}
    assert [s["name"] for s in done["stages"]] == ["split_lines", "count_words", "add_up"]
