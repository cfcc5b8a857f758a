"""ICP versions over HTTP: drafts refused with the exact rule and reason, immutability once
active, rescoring with progress on activation, scores with their breakdown, `lead.qualified`
once, and the dry scorer."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from leadrelay.core.db import Database
from leadrelay.core.events import OutboxEvent
from leadrelay.core.jobs import JobRuntime
from leadrelay.identity.models import Role
from tests.capture.test_intake_api import make_source
from tests.factories import TenantCtx, TenantFactory
from tests.support import run_jobs

RULES: list[dict[str, Any]] = [
    {
        "id": "us",
        "label": "Based in the US",
        "when": [{"fact": "country", "op": "equals", "value": "US"}],
        "points": 40,
    },
    {
        "id": "leader",
        "label": "Sales leadership",
        "when": [{"fact": "title", "op": "regex", "value": r"\b(vp|head|chief)\b"}],
        "points": 40,
    },
    {
        "id": "free-mail",
        "label": "Personal address",
        "when": [{"fact": "flags", "op": "contains", "value": "free_email"}],
        "points": -30,
    },
]


@pytest.fixture
async def tenant(tenants: TenantFactory) -> TenantCtx:
    return await tenants.create()


async def add_leads(client: httpx.AsyncClient, tenant: TenantCtx) -> dict[str, str]:
    headers = await tenant.headers(Role.ADMIN)
    await make_source(client, tenant, "Form")
    ids = {}
    for key, lead in {
        "vp": {"email": "grace@navy.example.com", "title": "VP Sales", "country": "US"},
        "engineer": {"email": "alan@bletchley.example.co.uk", "title": "Engineer", "country": "GB"},
        "free": {"email": "someone@gmail.com", "title": "Head of Growth", "country": "US"},
    }.items():
        response = await client.post("/v1/leads", json={"source": "Form", **lead}, headers=headers)
        assert response.status_code == 202, response.text
        ids[key] = response.json()["lead_id"]
    return ids


class TestVersions:
    async def test_invalid_rules_are_refused_with_rule_and_reason(
        self, client: httpx.AsyncClient, tenant: TenantCtx
    ) -> None:
        headers = await tenant.headers(Role.MANAGER)
        bad = [
            {**RULES[0], "when": [{"fact": "country", "op": "gt", "value": 3}]},
            {**RULES[1], "when": [{"fact": "title", "op": "regex", "value": "(unclosed"}]},
            {**RULES[2], "when": [{"fact": "budget", "op": "exists", "value": True}]},
        ]
        response = await client.post("/v1/scoring/versions", json={"rules": bad}, headers=headers)
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        errors = {e["field"]: e["reason"] for e in response.json()["errors"]}
        assert "operator gt does not apply" in errors["rules[0] (us).when[0]"]
        assert "invalid regular expression" in errors["rules[1] (leader).when[0]"]
        assert errors["rules[2] (free-mail).when[0]"] == "unknown fact 'budget'"
        wrong_type = await client.post(
            "/v1/scoring/versions", json={"rules": [{**RULES[0], "points": 500}]}, headers=headers
        )
        assert wrong_type.status_code == 422

    async def test_draft_edit_activate_then_immutable(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCtx,
        job_runtime: JobRuntime,
        db: Database,
    ) -> None:
        leads = await add_leads(client, tenant)
        await run_jobs()  # verified; no active version yet, so nothing is scored
        headers = await tenant.headers(Role.MANAGER)
        draft = (
            await client.post(
                "/v1/scoring/versions", json={"rules": RULES[:1], "threshold": 60}, headers=headers
            )
        ).json()
        assert (draft["number"], draft["status"]) == (1, "draft")
        edited = await client.put(
            f"/v1/scoring/versions/{draft['id']}",
            json={"rules": RULES, "threshold": 60, "note": "leaders too"},
            headers=headers,
        )
        assert edited.status_code == 200, edited.text
        assert len(edited.json()["rules"]) == 3

        activated = await client.post(
            f"/v1/scoring/versions/{draft['id']}/activate", headers=headers
        )
        assert activated.status_code == 202, activated.text
        run = activated.json()["run"]
        assert activated.json()["version"]["status"] == "active"
        await run_jobs()
        progress = (await client.get(f"/v1/runs/{run['id']}", headers=headers)).json()
        assert (progress["status"], progress["done"], progress["total"]) == ("done", 3, 3)

        again = await client.put(
            f"/v1/scoring/versions/{draft['id']}", json={"rules": []}, headers=headers
        )
        assert again.status_code == 409
        assert again.json()["code"] == "version-immutable"

        vp = (await client.get(f"/v1/leads/{leads['vp']}/score", headers=headers)).json()
        assert (vp["score"], vp["qualified"]) == (80, True)
        assert [b["rule"] for b in vp["breakdown"]] == ["us", "leader"]
        assert vp["version_id"] == draft["id"]
        free = (await client.get(f"/v1/leads/{leads['free']}/score", headers=headers)).json()
        assert (free["score"], free["total"], free["qualified"]) == (50, 50, False)
        engineer = (
            await client.get(f"/v1/leads/{leads['engineer']}/score", headers=headers)
        ).json()
        assert engineer["score"] == 0

        # A second version: the first retires; lead.qualified once per lead and version.
        second = (
            await client.post(
                "/v1/scoring/versions", json={"rules": RULES, "threshold": 50}, headers=headers
            )
        ).json()
        await client.post(f"/v1/scoring/versions/{second['id']}/activate", headers=headers)
        await run_jobs()
        versions = (await client.get("/v1/scoring/versions", headers=headers)).json()
        assert [(v["number"], v["status"]) for v in versions] == [(2, "active"), (1, "retired")]
        async with db.session(tenant.id) as session:
            qualified = await session.scalar(
                select(func.count()).where(OutboxEvent.type == "lead.qualified")
            )
        assert qualified == 3  # vp under v1; vp and free under v2


class TestPipeline:
    async def test_a_new_lead_is_scored_after_verification(
        self, client: httpx.AsyncClient, tenant: TenantCtx, job_runtime: JobRuntime
    ) -> None:
        headers = await tenant.headers(Role.MANAGER)
        draft = (
            await client.post("/v1/scoring/versions", json={"rules": RULES}, headers=headers)
        ).json()
        await client.post(f"/v1/scoring/versions/{draft['id']}/activate", headers=headers)
        leads = await add_leads(client, tenant)
        await run_jobs()
        vp = await client.get(f"/v1/leads/{leads['vp']}/score", headers=headers)
        assert vp.status_code == 200, vp.text
        assert vp.json()["score"] == 80

    async def test_try_scores_facts_and_real_leads_and_writes_nothing(
        self, client: httpx.AsyncClient, tenant: TenantCtx, job_runtime: JobRuntime
    ) -> None:
        headers = await tenant.headers(Role.REP)
        tried = await client.post(
            "/v1/scoring/try",
            json={"facts": {"country": "US", "title": "Chief of Staff"}, "rules": {"rules": RULES}},
            headers=headers,
        )
        assert tried.status_code == 200, tried.text
        assert (tried.json()["score"], tried.json()["qualified"]) == (80, True)
        none_active = await client.post(
            "/v1/scoring/try", json={"facts": {"country": "US"}}, headers=headers
        )
        assert none_active.status_code == 404
        both = await client.post(
            "/v1/scoring/try",
            json={"facts": {}, "lead_id": "00000000-0000-0000-0000-000000000000"},
            headers=headers,
        )
        assert both.status_code == 422


class TestIsolation:
    async def test_another_tenants_version_and_scores_are_not_found(
        self, client: httpx.AsyncClient, tenants: TenantFactory
    ) -> None:
        a, b = await tenants.create(), await tenants.create()
        draft = (
            await client.post(
                "/v1/scoring/versions", json={"rules": RULES}, headers=await a.headers()
            )
        ).json()
        for method, path in (
            ("GET", f"/v1/scoring/versions/{draft['id']}"),
            ("POST", f"/v1/scoring/versions/{draft['id']}/activate"),
            ("GET", f"/v1/scoring/versions/{draft['id']}/quality"),
        ):
            response = await client.request(method, path, headers=await b.headers())
            assert response.status_code == 404, (path, response.text)
