"""The README's "your own pipeline" example runs as written, loaded as the README says."""

from __future__ import annotations

from collections.abc import Iterator

import dramatiq
import pytest

from conveyor.config import configure, settings
from pipelines.services.jobs import start_job
from tests.support.jobs import wait_for_job


@pytest.fixture
def with_word_count(stub_broker: dramatiq.Broker) -> Iterator[None]:
    """``CONVEYOR_PIPELINES=examples.word_count``, through the composition root, on the test's broker."""
    from pipelines.worker import setup

    configure(settings(), pipeline_modules=("examples.word_count",))
    setup(stub_broker)
    yield
    configure(settings(), pipeline_modules=())
    setup(stub_broker)


def test_the_readme_example_pipeline_runs_end_to_end(with_word_count, stub_worker):
    job = start_job(pipeline="word_count", input={"text": "one two three\n\nfour five\nsix"})
    done = wait_for_job(job["id"])
    assert done["status"] == "completed"
    assert done["result"] == {"lines": 3, "words": 6}
    assert [s["name"] for s in done["stages"]] == ["split_lines", "count_words", "add_up"]
