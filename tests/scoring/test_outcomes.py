"""Outcomes in, quality out: JSON and CSV imports (idempotent, row-level report), the HubSpot
sync as a job against a HubSpot stand-in, quality of a version on its outcomes, and
"suggest weights" proposing a draft that never activates itself."""

from __future__ import annotations

import random
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from leadrelay.core.db import Database
from leadrelay.core.jobs import JobRuntime
from leadrelay.identity.models import Role
from leadrelay.scoring.models import LeadOutcome
from tests.crm.hubspot_server import HubSpotServer, hubspot_server
from tests.crm.test_hubspot import DISQUALIFIED_STAGE, serve_two_pages
from tests.factories import TenantCtx, TenantFactory
from tests.routing.test_routing_api import add_leads
from tests.scoring.test_scoring_api import RULES
from tests.support import run_jobs


@pytest.fixture
async def tenant(tenants: TenantFactory) -> TenantCtx:
    return await tenants.create()


@pytest.fixture
def server() -> Any:
    with hubspot_server() as running:
        yield running


async def emails_of(db: Database, tenant: TenantCtx, emails: list[str], **fields: Any) -> None:
    from leadrelay.capture.models import Lead

    ids = await add_leads(db, tenant, len(emails), **fields)
    async with db.session(tenant.id) as session:
        for lead_id, email in zip(ids, emails, strict=True):
            lead = await session.get(Lead, lead_id)
            assert lead is not None
            lead.email = email


class TestImports:
    async def test_json_outcomes_are_matched_and_idempotent(
        self, client: httpx.AsyncClient, tenant: TenantCtx, db: Database
    ) -> None:
        await emails_of(db, tenant, ["ada@example.com"])
        headers = await tenant.headers(Role.MANAGER)
        body = {
            "outcomes": [
                {
                    "external_id": "deal-1",
                    "outcome": "won",
                    "closed_at": "2026-11-01T12:00:00Z",
                    "amount": "1200.50",
                    "currency": "EUR",
                    "email": "Ada@Example.com",
                },
                {
                    "external_id": "deal-2",
                    "outcome": "lost",
                    "closed_at": "2026-11-02T12:00:00Z",
                    "email": "nobody@example.com",
                },
            ]
        }
        first = await client.post("/v1/outcomes", json=body, headers=headers)
        assert first.status_code == 200, first.text
        assert [(r["status"], r["lead_id"] is not None) for r in first.json()] == [
            ("recorded", True),
            ("recorded", False),
        ]
        again = await client.post("/v1/outcomes", json=body, headers=headers)
        assert [r["status"] for r in again.json()] == ["updated", "updated"]
        async with db.session(tenant.id) as session:
            assert await session.scalar(select(func.count()).select_from(LeadOutcome)) == 2
        bad = await client.post(
            "/v1/outcomes",
            json={"outcomes": [{**body["outcomes"][0], "outcome": "maybe", "amount": "-3"}]},
            headers=headers,
        )
        assert bad.status_code == 422
        no_lead = await client.post(
            "/v1/outcomes",
            json={
                "outcomes": [
                    {"external_id": "x", "outcome": "won", "closed_at": "2026-11-01T00:00:00Z"}
                ]
            },
            headers=headers,
        )
        assert no_lead.status_code == 422

    async def test_csv_import_reports_every_row(
        self, client: httpx.AsyncClient, tenant: TenantCtx, db: Database
    ) -> None:
        await emails_of(db, tenant, ["grace@example.com"])
        headers = await tenant.headers(Role.MANAGER)
        content = (
            "email,outcome,closed_at,amount,currency\n"
            "grace@example.com,won,2026-10-01,100,USD\n"
            "alan@example.com,lost,2026-10-02,,\n"
            "grace@example.com,perhaps,2026-10-03,,\n"
        )
        response = await client.post(
            "/v1/outcomes/import",
            files={"file": ("outcomes.csv", content.encode(), "text/csv")},
            headers=headers,
        )
        assert response.status_code == 200, response.text
        report = response.json()
        assert (report["rows"], report["recorded"], report["unmatched"], report["rejected"]) == (
            3,
            1,
            1,
            1,
        )
        assert report["results"][2]["line"] == 4
        assert report["results"][2]["errors"][0]["field"] == "outcome"
        again = await client.post(
            "/v1/outcomes/import",
            files={"file": ("outcomes.csv", content.encode(), "text/csv")},
            headers=headers,
        )
        assert again.json()["updated"] == 1  # same rows, same default ids: nothing new
        refused = await client.post(
            "/v1/outcomes/import",
            files={"file": ("x.csv", b"name,city\nA,B\n", "text/csv")},
            headers=headers,
        )
        assert refused.status_code == 422


class TestHubSpotSync:
    async def test_sync_job_records_deals_and_moves_the_cursor(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCtx,
        db: Database,
        job_runtime: JobRuntime,
        server: HubSpotServer,
    ) -> None:
        await emails_of(db, tenant, ["jose@muller-gmbh.de", "zoe@alander.se"])
        headers = await tenant.headers(Role.ADMIN)
        missing = await client.post("/v1/crm/hubspot/sync", headers=headers)
        assert missing.status_code == 404
        connected = await client.put(
            "/v1/crm/hubspot",
            json={
                "access_token": "pat-na1-11111111-2222-3333-4444-555555555555",
                "base_url": server.base_url,
                "stage_labels": {DISQUALIFIED_STAGE: "disqualified"},
            },
            headers=headers,
        )
        assert connected.status_code == 200, connected.text
        assert "access_token" not in connected.json()
        serve_two_pages(server)
        queued = await client.post("/v1/crm/hubspot/sync", headers=headers)
        assert queued.status_code == 202
        await run_jobs()
        status = (await client.get("/v1/crm/hubspot", headers=headers)).json()
        assert status["last_error"] is None
        assert status["synced_until"].startswith("2024-05-17T07:00:00")
        async with db.session(tenant.id) as session:
            stored = {
                o.external_id: (o.label, o.lead_id is not None)
                for o in await session.scalars(select(LeadOutcome))
            }
        assert stored == {
            "18044191425": ("won", True),
            "18044191426": ("lost", False),
            "18044191427": ("disqualified", True),
        }
        search = server.received("/crm/v3/objects/deals/search")[0]
        assert search.headers["authorization"] == (
            "Bearer pat-na1-11111111-2222-3333-4444-555555555555"
        )


class TestQuality:
    async def test_quality_and_suggested_weights_from_outcomes(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCtx,
        db: Database,
        job_runtime: JobRuntime,
    ) -> None:
        headers = await tenant.headers(Role.MANAGER)
        rng = random.Random(5)
        us = [f"us{n}@example.com" for n in range(40)]
        gb = [f"gb{n}@example.com" for n in range(40)]
        await emails_of(db, tenant, us, country="US")
        await emails_of(db, tenant, gb, country="GB")
        draft = (
            await client.post("/v1/scoring/versions", json={"rules": RULES}, headers=headers)
        ).json()
        too_early = await client.post(
            f"/v1/scoring/versions/{draft['id']}/suggest", headers=headers
        )
        assert too_early.status_code == 422
        await client.post(f"/v1/scoring/versions/{draft['id']}/activate", headers=headers)
        await run_jobs()
        # US leads win four times in five; GB leads one time in five.
        outcomes = [
            {
                "external_id": email,
                "outcome": "won"
                if rng.random() < (0.8 if email.startswith("us") else 0.2)
                else "lost",
                "closed_at": "2026-11-10T00:00:00Z",
                "email": email,
            }
            for email in us + gb
        ]
        stored = await client.post("/v1/outcomes", json={"outcomes": outcomes}, headers=headers)
        assert stored.status_code == 200, stored.text
        quality = (
            await client.get(f"/v1/scoring/versions/{draft['id']}/quality", headers=headers)
        ).json()
        assert quality["labelled"] == 80
        assert quality["auc"] > 0.7
        assert len(quality["deciles"]) >= 2
        suggested = await client.post(
            f"/v1/scoring/versions/{draft['id']}/suggest", headers=headers
        )
        assert suggested.status_code == 201, suggested.text
        proposal = suggested.json()
        assert proposal["status"] == "draft"  # never activated by itself
        assert proposal["based_on_id"] == draft["id"]
        assert proposal["suggestion"]["backtest_suggested"]["auc"] is not None
        points = {rule["id"]: rule["points"] for rule in proposal["rules"]}
        assert points["us"] > 0
        versions = (await client.get("/v1/scoring/versions", headers=headers)).json()
        assert [v["status"] for v in versions] == ["draft", "active"]


class TestCli:
    async def test_outcomes_import_from_the_command_line(
        self, tenant: TenantCtx, db: Database, urls: Any, tmp_path: Any
    ) -> None:
        import json

        from tests.support import invoke_cli

        await emails_of(db, tenant, ["cli@example.com"])
        path = tmp_path / "outcomes.csv"
        path.write_text(
            "email,outcome,closed_at\ncli@example.com,won,2026-09-01\nx@example.com,soon,2026-09-02\n",
            encoding="utf-8",
        )
        report = tmp_path / "report.jsonl"
        result = await invoke_cli(
            urls,
            str(tmp_path),
            "outcomes",
            "import",
            str(path),
            "--tenant",
            tenant.slug,
            "--report",
            str(report),
        )
        assert result.exit_code == 0, result.output
        assert "1 recorded" in result.output
        assert "1 rejected" in result.output
        lines = [json.loads(line) for line in report.read_text().splitlines()]
        assert [(x["line"], x["status"]) for x in lines] == [(2, "recorded"), (3, "rejected")]
