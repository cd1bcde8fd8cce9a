"""``/metrics`` serves Prometheus text, optionally behind its own token."""

from __future__ import annotations

from conveyor.config import configure, settings


def test_metrics_are_served_in_prometheus_text(client):
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    assert b"conveyor_queue_lag_seconds" in response.data


def test_metrics_can_require_their_own_token(client):
    before = settings()
    configure(before, metrics_token="scrape-me")
    try:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer scrape-me"}).status_code == 200
    finally:
        configure(before)
