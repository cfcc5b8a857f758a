"""Retention over HTTP: read and replace the policy (validated, audited), sweep now (counts),
the latest runs; only admins and owners change or run it."""

from __future__ import annotations

import httpx

from leadrelay.compliance import retention
from leadrelay.core.clock import utcnow
from leadrelay.identity.models import Role
from tests.compliance.test_retention import DUE, POLICY, seed
from tests.factories import TenantFactory


class TestRetentionApi:
    async def test_reads_the_defaults_then_replaces_the_policy(
        self, client: httpx.AsyncClient, tenants: TenantFactory
    ) -> None:
        tenant = await tenants.create()
        admin = await tenant.headers(Role.ADMIN)
        current = (await client.get("/v1/compliance/retention", headers=admin)).json()
        assert current["messages_days"] == 730
        assert current["defaults"] == retention.DEFAULT_POLICY.as_dict()
        put = await client.put(
            "/v1/compliance/retention",
            json={"messages_days": 60, "audit_days": None, "outcomes_days": None},
            headers=admin,
        )
        assert put.status_code == 200, put.text
        assert put.json()["messages_days"] == 60
        assert put.json()["outcomes_days"] is None
        assert put.json()["telemetry_days"] == 365  # left out: its default
        audit = await client.get(
            "/v1/audit", params={"action": "retention.policy_changed"}, headers=admin
        )
        (event,) = audit.json()
        assert event["data"]["after"]["messages_days"] == 60

    async def test_refuses_a_bad_policy_naming_the_field(
        self, client: httpx.AsyncClient, tenants: TenantFactory
    ) -> None:
        tenant = await tenants.create()
        admin = await tenant.headers(Role.ADMIN)
        short = await client.put(
            "/v1/compliance/retention", json={"messages_days": 5}, headers=admin
        )
        assert short.status_code == 422
        assert [e["field"] for e in short.json()["errors"]] == ["messages_days"]
        unknown = await client.put("/v1/compliance/retention", json={"forever": 5}, headers=admin)
        assert unknown.status_code == 422
        negative = await client.put(
            "/v1/compliance/retention", json={"telemetry_days": -1}, headers=admin
        )
        assert negative.status_code == 422
        assert "telemetry_days" in negative.text

    async def test_a_run_now_returns_the_counts_and_is_listed(
        self, client: httpx.AsyncClient, tenants: TenantFactory
    ) -> None:
        tenant = await tenants.create()
        admin = await tenant.headers(Role.ADMIN)
        assert (
            await client.put("/v1/compliance/retention", json=POLICY, headers=admin)
        ).status_code == 200
        async with tenant.db.session(tenant.id) as session:
            await seed(session, tenant.id, utcnow())
        run = await client.post("/v1/compliance/retention/run", headers=admin)
        assert run.status_code == 200, run.text
        body = run.json()
        assert body["counts"] == {**DUE, "audit_events": 0}
        assert body["total"] == sum(DUE.values())
        runs = await client.get(
            "/v1/compliance/retention/runs", headers=await tenant.headers(Role.OPERATOR)
        )
        (last,) = runs.json()
        assert last["counts"] == body["counts"]
        assert last["actor_type"] == "api_key"
        verified = await client.get("/v1/audit/verify", headers=admin)
        assert verified.json()["ok"] is True

    async def test_a_manager_may_neither_change_nor_run_it(
        self, client: httpx.AsyncClient, tenants: TenantFactory
    ) -> None:
        tenant = await tenants.create()
        manager = await tenant.headers(Role.MANAGER)
        assert (await client.get("/v1/compliance/retention", headers=manager)).status_code == 200
        put = await client.put("/v1/compliance/retention", json={}, headers=manager)
        assert put.status_code == 403
        run = await client.post("/v1/compliance/retention/run", headers=manager)
        assert run.status_code == 403
