"""Pipelines, stats, notifications, health, the OpenAPI description, its docs page and the dashboard."""

from __future__ import annotations

import re

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from conveyor.config import configure, load_settings, settings
from pipelines.store import db as database
from tests.support.jobs import wait_for_job
from tests.support.web import submit


def test_pipelines_are_listed_with_stages_and_input_schemas(client, auth):
    response = client.get("/api/pipelines", headers=auth)
    assert response.status_code == 200
    pipelines = {p["name"]: p for p in response.get_json()["pipelines"]}
    demo = pipelines["demo"]
    assert demo["stages"] == ["prepare", "work", "count", "branches", "merge"]
    assert demo["description"]
    assert demo["input_schema"]["properties"]["items"]["type"] == "integer"
    assert demo["input_schema"]["properties"]["items"]["maximum"] == 500


def test_stats_count_the_users_jobs_and_read_the_queues(client, auth, other_user, stub_worker):
    done = submit(client, auth, input={"items": 1})
    wait_for_job(done["id"])
    canceled = submit(client, auth, input={"items": 20, "sleep": 1})
    client.post(f"/api/jobs/{canceled['id']}/cancel", headers=auth)

    stats = client.get("/api/stats", headers=auth).get_json()
    assert stats["jobs"]["by_status"]["completed"] == 1
    assert stats["jobs"]["by_status"]["canceled"] == 1
    assert stats["jobs"]["by_pipeline"]["demo"] == {"completed": 1, "canceled": 1}
    assert stats["jobs"]["total"] == 2
    assert {"default", "webhooks"} <= set(stats["queues"])
    assert stats["queues"]["default"]["ready"] >= 0
    assert stats["workers"]["seen"] == 1  # the test's worker announced itself

    theirs = client.get("/api/stats", headers={"Authorization": f"Bearer {other_user.token}"}).get_json()
    assert theirs["jobs"]["total"] == 0


def test_notifications_list_finished_jobs_once(client, auth, stub_worker):
    first = submit(client, auth, input={"items": 1})
    unfinished = submit(client, auth, input={"items": 1, "wait_seconds": 30})
    wait_for_job(first["id"])

    peek = client.get("/api/notifications?mark_seen=false", headers=auth).get_json()["notifications"]
    assert [j["id"] for j in peek] == [first["id"]]
    seen = client.get("/api/notifications", headers=auth).get_json()["notifications"]
    assert [(j["id"], j["status"]) for j in seen] == [(first["id"], "completed")]
    assert client.get("/api/notifications", headers=auth).get_json()["notifications"] == []

    client.post(f"/api/jobs/{unfinished['id']}/cancel", headers=auth)
    later = client.get("/api/notifications", headers=auth).get_json()["notifications"]
    assert [(j["id"], j["status"]) for j in later] == [(unfinished["id"], "canceled")]


def test_healthz_answers_200_when_database_and_broker_are_up(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "database": "ok", "broker": "ok"}


def test_healthz_answers_503_naming_the_database_when_it_is_down(client):
    current = settings()
    configure(load_settings({"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none", "CONVEYOR_BROKER": "stub"}))
    try:
        response = client.get("/healthz")
    finally:
        database.dispose_all()
        configure(current)
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "unavailable" and body["database"].startswith("down") and body["broker"] == "ok"


def test_healthz_answers_503_naming_the_broker_when_it_is_down(client):
    stub = dramatiq.get_broker()
    dramatiq.set_broker(RedisBroker(url="redis://127.0.0.1:1/0", socket_connect_timeout=0.5))
    try:
        response = client.get("/healthz")
    finally:
        dramatiq.set_broker(stub)
    assert response.status_code == 503
    assert response.get_json()["broker"].startswith("down") and response.get_json()["database"] == "ok"


def test_the_openapi_description_is_generated_and_covers_the_contract(client):
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    spec = response.get_json()
    assert spec["openapi"].startswith("3.1")
    paths = spec["paths"]
    for path, methods in {"/api/jobs": {"get", "post"}, "/api/jobs/{job_id}": {"get"},
                          "/api/jobs/{job_id}/cancel": {"post"}, "/api/jobs/{job_id}/retry": {"post"},
                          "/api/jobs/{job_id}/events": {"get"}, "/api/pipelines": {"get"},
                          "/api/files": {"post"}, "/api/files/{file_id}": {"get"}, "/api/stats": {"get"},
                          "/healthz": {"get"}}.items():
        assert methods <= set(paths[path]), path
    post = paths["/api/jobs"]["post"]
    assert "JobIn" in str(post["requestBody"]) and {"202", "400", "401", "422", "429"} <= set(post["responses"])
    assert "application/problem+json" in post["responses"]["422"]["content"]
    assert {"Location", "Retry-After"} <= set(post["responses"]["202"]["headers"])
    assert [(p["name"], p["in"]) for p in post["parameters"]] == [("Idempotency-Key", "header")]
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert "webhook" in spec["components"]["schemas"]["JobOut"]["properties"]


def test_the_docs_page_works_offline(client):
    page = client.get("/api/docs", follow_redirects=True)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets and not [a for a in assets if a.startswith(("http:", "https:", "//"))]
    for asset in assets:
        assert client.get(f"/api/{asset}").status_code == 200, asset


def test_the_dashboard_is_served_with_its_own_assets_only(client):
    page = client.get("/")
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    html = page.get_data(as_text=True)
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', html)
    assert len(assets) >= 2
    for asset in assets:
        assert client.get(asset).status_code == 200
