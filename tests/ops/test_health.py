from __future__ import annotations

import httpx

from leadrelay.core.db import Database
from leadrelay.worker import beat


class TestHealth:
    async def test_reports_database_queue_and_worker(
        self, client: httpx.AsyncClient, db: Database
    ) -> None:
        await beat(db, "test-worker")
        response = await client.get("/health")
        assert response.status_code == 200
        body = response.json()
        assert body["database"] == "ok"
        assert body["queue"]["lag_seconds"] >= 0
        assert body["queue"]["todo"] >= 0
        assert body["worker"]["last_heartbeat_age_seconds"] < 60
        assert body["status"] == "ok"

    async def test_metrics_are_prometheus_text(self, client: httpx.AsyncClient) -> None:
        await client.get("/health")
        response = await client.get("/metrics")
        assert response.status_code == 200
        assert "leadrelay_http_requests_total" in response.text
        assert 'route="/health"' in response.text

    async def test_responses_carry_request_and_correlation_ids(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.get("/health", headers={"x-correlation-id": "flow-42"})
        assert response.headers["x-correlation-id"] == "flow-42"
        assert len(response.headers["x-request-id"]) == 32
