"""Heroku's own files agree with the Procfile and the configuration: app.json, .python-version, requirements.txt."""

from __future__ import annotations

import configparser
import json
import re
from pathlib import Path

from conveyor.config import load_settings

ROOT = Path(__file__).resolve().parents[2]


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(":", 1) for line in lines if line.strip() and not line.startswith("#"))


def app_json() -> dict:
    return json.loads((ROOT / "app.json").read_text())


def test_the_formation_runs_every_procfile_process_and_the_release_phase_migrates():
    processes = {name: command.strip() for name, command in procfile().items()}
    assert processes.pop("release") == "conveyor db upgrade"  # Heroku runs it before each release goes live
    formation = app_json()["formation"]
    assert set(formation) == set(processes) == {"web", "worker", "clock"}
    assert all(spec["quantity"] >= 1 for spec in formation.values())
    assert formation["clock"]["quantity"] == 1  # one reconciler and retention sweeper is enough


def test_the_add_ons_give_the_database_and_redis_the_production_settings_require():
    plans = [addon["plan"] for addon in app_json()["addons"]]
    assert any(p.startswith("heroku-postgresql:") for p in plans)
    assert any(p.startswith("heroku-redis:") for p in plans)
    env = app_json()["env"]
    assert env["SECRET_KEY"] == {**env["SECRET_KEY"], "generator": "secret"}
    assert env["CONVEYOR_ENV"]["value"] == "production"
    assert env["STORAGE_URL"]["required"] is True


def test_a_dyno_configured_as_app_json_says_starts_with_valid_production_settings():
    """The add-ons' URLs as Heroku sets them, the generated secret, and the values users must give."""
    environ = {"DATABASE_URL": "postgres://u:p@ec2-1-2-3-4.compute-1.amazonaws.com:5432/d1",
               "REDIS_URL": "rediss://:p@ec2-5-6-7-8.compute-1.amazonaws.com:12345"}
    for name, spec in app_json()["env"].items():
        if "value" in spec:
            environ[name] = spec["value"]
        elif spec.get("generator") == "secret":
            environ[name] = "x" * 64
        elif spec.get("required"):
            environ[name] = "s3://bucket/conveyor" if name == "STORAGE_URL" else "given-by-the-user"
    config = load_settings(environ)
    assert config.env == "production"
    assert config.database_url.startswith("postgresql+psycopg://")
    assert config.redis_url is not None and config.redis_url.endswith("?ssl_cert_reqs=none")  # self-signed TLS


def test_every_variable_app_json_sets_is_one_conveyor_reads():
    read = "".join((ROOT / p).read_text() for p in ("conveyor/config.py", "web/gunicorn.conf.py", "Procfile"))
    for name in app_json()["env"]:
        assert name in read, f"{name} is set by app.json but read nowhere"


def test_python_version_and_requirements_match_the_package():
    version = (ROOT / ".python-version").read_text().strip()
    assert re.fullmatch(r"3\.\d+", version)
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    assert setup["options"]["python_requires"].strip() == f">={version}"
    assert f"Programming Language :: Python :: {version}" in setup["metadata"]["classifiers"]
    requirements = [line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()
                    if line.strip() and not line.startswith("#")]
    assert requirements == ["."]  # the base install: a Heroku slug carries no local AI providers
